"""The loaders of the built-in model kinds (named in shared.models.kinds): a file to a model."""

from __future__ import annotations

from pathlib import Path

from shared.models.registry import ResolvedModel
from shared.models.tokenizers import Tokenizer
from worker.ml.decode import TextGenerator
from worker.ml.persist import load_model_verified
from worker.model_cache import LoadedModel


def load_text(resolved: ResolvedModel, path: Path) -> LoadedModel:
    """Load a text model (sha256 checked) with its tokenizer and a generator over both."""
    model = load_model_verified(path, resolved.sha256)
    tokenizer = Tokenizer.from_json(resolved.config["tokenizer"])
    return LoadedModel(resolved, model, TextGenerator(model, tokenizer), tokenizer)


def load_image(resolved: ResolvedModel, path: Path) -> LoadedModel:
    """Load an image model's generator (sha256 checked)."""
    return LoadedModel(resolved, load_model_verified(path, resolved.sha256))
