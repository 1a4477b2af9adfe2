"""The models' hyperparameters and presets, and what training one costs in memory.

Pure Python: the API checks a training job against these before accepting it, and the worker
builds its Keras models from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class TextConfig:
    """Hyperparameters of the text model."""

    tokenizer: str
    vocab_size: int
    embedding_dim: int
    units: int
    seq_len: int
    learning_rate: float = 1e-3
    batch_size: int = 64


PRESETS: dict[str, TextConfig] = {
    # The tutorial's model.
    "seed": TextConfig(
        tokenizer="word", vocab_size=10_000, embedding_dim=128, units=1024, seq_len=32
    ),
    # One epoch over ~1 MB of text takes about a minute on 2 CPU cores (~18k tokens/s) and
    # reaches ~2.4 bits/char: word-like output with the corpus's punctuation and layout.
    "small": TextConfig(
        tokenizer="char",
        vocab_size=256,
        embedding_dim=64,
        units=256,
        seq_len=64,
        learning_rate=4e-3,
        batch_size=32,
    ),
    # For tests only.
    "tiny": TextConfig(
        tokenizer="char",
        vocab_size=256,
        embedding_dim=8,
        units=16,
        seq_len=32,
        learning_rate=1e-2,
        batch_size=32,
    ),
}


# The generator starts from an 8x8 feature map, as in the tutorial.
BASE_SIZE = 8


@dataclass(frozen=True)
class ImageConfig:
    """Hyperparameters of the DCGAN."""

    latent_dim: int = 100
    image_size: int = 32
    channels: int = 1
    base_filters: int = 256
    disc_filters: int = 64
    learning_rate: float = 1e-4

    def __post_init__(self) -> None:
        k = math.log2(self.image_size / BASE_SIZE) if self.image_size >= BASE_SIZE else 0
        if k < 1 or not k.is_integer():
            raise ValueError(f"image_size must be 8 * 2**k with k >= 1, got {self.image_size}")
        if self.channels < 1 or self.latent_dim < 1:
            raise ValueError("channels and latent_dim must be positive")

    @property
    def upsamples(self) -> int:
        """Return the number of stride-2 blocks from 8x8 to image_size."""
        return int(math.log2(self.image_size // BASE_SIZE))


IMAGE_PRESETS: dict[str, ImageConfig] = {
    "default": ImageConfig(),
    "tiny": ImageConfig(latent_dim=16, base_filters=16, disc_filters=8),
}


MIB = 1024 * 1024
FLOAT_BYTES = 4
# Bytes per corpus character while a text job prepares its data: the text, the token list
# (Python ints) and the int32 windows of inputs and targets.
TEXT_PREP_BYTES_PER_CHAR = 48
# Copies of each weight in training: the value, its gradient, and Adam's two moments.
TRAIN_COPIES = 4


def text_config(params: Any) -> TextConfig:
    """Return a text job's hyperparameters: the preset with any overrides from its params."""
    overrides = {
        k: getattr(params, k)
        for k in ("tokenizer", "units", "embedding_dim", "vocab_size", "seq_len", "batch_size")
        if getattr(params, k) is not None
    }
    return replace(PRESETS[params.preset], **overrides)


def image_config(params: Any) -> ImageConfig:
    """Return an image job's hyperparameters for its params."""
    return replace(
        IMAGE_PRESETS[params.preset], image_size=params.image_size, channels=params.channels
    )


def text_train_mb(params: Any) -> float:
    """Estimate the memory (MiB) a ``text.train`` job needs at its peak, generously."""
    cfg = text_config(params)
    v, e, u = cfg.vocab_size, cfg.embedding_dim, cfg.units
    weights = v * e + 4 * u * (e + u + 1) + u * v + v
    # Per token of a batch, forward and backward: embedding, four gates, state, logits.
    activations = cfg.batch_size * cfg.seq_len * (e + 6 * u + 2 * v) * 2
    data = params.max_chars * TEXT_PREP_BYTES_PER_CHAR
    return ((weights * TRAIN_COPIES + activations) * FLOAT_BYTES + data) / MIB


def image_train_mb(params: Any) -> float:
    """Estimate the memory (MiB) an ``image.train`` job needs at its peak, generously."""
    cfg = image_config(params)
    size, c, g, d = cfg.image_size, cfg.channels, cfg.base_filters, cfg.disc_filters
    generator = cfg.latent_dim * BASE_SIZE**2 * g + 25 * (g * g // 2 + g * c)
    discriminator = 25 * (c * d + d * 2 * d) + (size // 4) ** 2 * 2 * d
    # Widest feature maps of both networks, forward and backward, per image of a batch.
    per_image = size * size * (g + 2 * d + c) * 2
    data = params.max_images * size * size * c * 2  # stored uint8 and training float32 copies
    weights = (generator + discriminator) * TRAIN_COPIES
    return ((weights + params.batch_size * per_image) * FLOAT_BYTES + data * FLOAT_BYTES) / MIB
