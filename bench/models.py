"""Registers untrained models of the real architectures (throughput does not depend on weights)."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from shared.data.artifacts import ArtifactStore
from shared.models.presets import TextConfig
from shared.models.registry import ModelRegistry
from shared.models.tokenizers import Tokenizer


def text_config(preset: str) -> tuple[TextConfig, Tokenizer]:
    """Return ``preset``'s config and tokenizer, the tokenizer fitted on the built-in corpus.

    The registered model and the in-process ceiling both come from here: the same vocabulary
    (the ``seed`` preset's word tokenizer finds fewer than 10,000 words), so the same model.
    """
    from worker.handlers.text_train import builtin_corpus
    from worker.ml.text import PRESETS, config_for_tokenizer

    cfg = PRESETS[preset]
    tokenizer = Tokenizer.fit(cfg.tokenizer, builtin_corpus(), cfg.vocab_size)
    return config_for_tokenizer(cfg, tokenizer), tokenizer


def register_text_model(
    artifacts: ArtifactStore, registry: ModelRegistry, name: str, preset: str = "small"
) -> str:
    """Register an untrained text model of ``preset``'s size; return name:version."""
    import keras

    from worker.ml.text import build_text_model

    keras.utils.set_random_seed(0)
    cfg, tokenizer = text_config(preset)
    config = {"text": asdict(cfg), "tokenizer": tokenizer.to_json()}
    return _register(artifacts, registry, name, "text", build_text_model(cfg), config)


def register_image_model(
    artifacts: ArtifactStore, registry: ModelRegistry, name: str, image_size: int = 32
) -> str:
    """Register a DCGAN generator of the tutorial's size; return name:version."""
    import keras

    from shared.models.presets import IMAGE_PRESETS
    from worker.ml.image import build_generator

    keras.utils.set_random_seed(0)
    cfg = replace(IMAGE_PRESETS["default"], image_size=image_size)
    return _register(
        artifacts, registry, name, "image", build_generator(cfg), {"image": asdict(cfg)}
    )


def _register(
    artifacts: ArtifactStore,
    registry: ModelRegistry,
    name: str,
    kind: str,
    model: object,
    config: dict,
) -> str:
    from worker.ml.persist import save_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        save_model(model, path)
        artifact = artifacts.save(
            None, "model", "application/octet-stream", path.read_bytes(), ".keras"
        )
    version = registry.register(
        name=name,
        kind=kind,
        config=config,
        artifact_id=artifact.id,
        sha256=artifact.sha256,
        metrics={"untrained": True},
        job_id=None,
    )
    return version.ref
