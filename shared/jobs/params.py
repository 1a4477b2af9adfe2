"""Parameter schemas of the built-in job types, with a limit on every size and count."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.jobs.numbers import Float, Int, JsonNumber, OptionalInt


class Params(BaseModel):
    """Base of job parameters: unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")


Seed = Field(None, ge=0, le=2**31 - 1, description="Same seed, same inputs: same output.")


class TextGenerateParams(Params):
    """Parameters of ``text.generate``."""

    prompt: str = Field(min_length=1, max_length=8000)
    max_tokens: Int = Field(100, ge=1, le=2048)
    temperature: Float = Field(1.0, gt=0, le=5)
    top_k: OptionalInt = Field(None, ge=1, le=100_000)
    seed: OptionalInt = Seed


class ImageGenerateParams(Params):
    """Parameters of ``image.generate``."""

    n: Int = Field(4, ge=1, le=64)
    seed: OptionalInt = Seed


class TrainParams(Params):
    """What every training job shares."""

    dataset_id: uuid.UUID | None = Field(
        None, description="An uploaded dataset; built-in if absent."
    )
    epochs: Int = Field(3, ge=1, le=500)
    batch_size: Int = Field(64, ge=1, le=4096)
    validation_split: Float = Field(0.1, gt=0, lt=0.5)
    version_every: OptionalInt = Field(
        None,
        ge=1,
        le=500,
        description="Also register a version after the first epoch and then every this many "
        "epochs, so a usable model exists early while training goes on.",
    )


class TextTrainParams(TrainParams):
    """Parameters of ``text.train``: a preset, optionally with its sizes overridden."""

    preset: Literal["tiny", "small", "seed"] = "small"
    tokenizer: Literal["char", "word"] | None = None
    units: OptionalInt = Field(None, ge=1, le=4096)
    embedding_dim: OptionalInt = Field(None, ge=1, le=2048)
    vocab_size: OptionalInt = Field(None, ge=4, le=50_000)
    seq_len: OptionalInt = Field(None, ge=4, le=512)
    batch_size: OptionalInt = Field(None, ge=1, le=4096, description="Default: the preset's.")
    max_chars: Int = Field(2_000_000, ge=1_000, le=50_000_000)
    epoch_chars: OptionalInt = Field(
        None,
        ge=1_000,
        le=50_000_000,
        description="Characters per epoch, each epoch the next slice of the shuffled corpus; "
        "default: the whole corpus.",
    )


class ImageTrainParams(TrainParams):
    """Parameters of ``image.train``."""

    preset: Literal["tiny", "default"] = "default"
    image_size: Annotated[Literal[16, 32, 64], JsonNumber] = 32
    channels: Annotated[Literal[1, 3], JsonNumber] = 1
    max_images: Int = Field(10_000, ge=16, le=200_000)
