"""The registry of model kinds: everything the stack knows of "text" or "image", in one entry.

An entry names its loader and its scheduler factory by import path, resolved only inside the
worker, so the API and the CLI read the registry without importing Keras. The built-in kinds are
registered below exactly as a plugin module (``Settings.plugins``) registers its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.config import Settings
from shared.errors import InputError


@dataclass(frozen=True)
class FormField:
    """One param a generate form shows; its bounds and default come from the params schema."""

    name: str
    label: str
    argument: bool = False  # the CLI takes it as a positional argument (a prompt), not an option


@dataclass(frozen=True)
class GenerateForm:
    """What the console's submit page and ``aigc generate <kind>`` show for a kind."""

    job_type: str
    title: str
    button: str
    fields: tuple[FormField, ...]


@dataclass(frozen=True)
class TrainingSpec:
    """The training job that ``ops.bootstrap`` submits for a kind's default model."""

    job_type: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class ModelKind:
    """How one kind of model is loaded, batched, trained on, defaulted and offered to users."""

    name: str
    # "module:function" (resolved, ResolvedModel; path, its verified local file) -> LoadedModel.
    loader: str
    # "module:function" (loaded: LoadedModel, settings: Settings) -> a scheduler with close().
    scheduler: str
    generate: GenerateForm | None = None
    train_job_type: str | None = None
    # The Settings field that names the default model (AIGC_DEFAULT_TEXT_MODEL, ...); a kind
    # without one takes its default from Settings.default_models (AIGC_DEFAULT_MODELS).
    default_setting: str | None = None
    # Upload suffix -> "module:function" (raw: bytes, limits, kind) -> shared.data Normalized.
    datasets: Mapping[str, str] = field(default_factory=dict)
    bootstrap: TrainingSpec | None = None

    def default_model(self, settings: Settings) -> str | None:
        """Return the name of this kind's default model, if the settings name one."""
        named = settings.default_models.get(self.name)
        if named is None and self.default_setting is not None:
            named = getattr(settings, self.default_setting)
        return named


def resolve(path: str) -> Any:
    """Import and return an object named ``module:attribute`` (a loader, a normaliser...)."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    """Add a model kind to the registry, replacing one of the same name."""
    _REGISTRY[kind.name] = kind
    return kind


def get(name: str) -> ModelKind:
    """Return the model kind called ``name``, or raise InputError."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise InputError(
            f"unknown model kind {name!r}; known kinds: {known}", field="kind"
        ) from None


def all_kinds() -> list[ModelKind]:
    """Return every registered kind, in the order registered (bootstrap trains in this order)."""
    return list(_REGISTRY.values())


def default_models(settings: Settings) -> dict[str, str]:
    """Return the default model's name of every kind that has one, by kind."""
    named = {k.name: k.default_model(settings) for k in _REGISTRY.values()}
    return {kind: name for kind, name in named.items() if name}


def _register_builtin() -> None:
    register(
        ModelKind(
            "text",
            loader="worker.ml.loaders:load_text",
            scheduler="worker.scheduler:text_scheduler",
            generate=GenerateForm(
                "text.generate",
                "Text",
                "Generate text",
                (
                    FormField("prompt", "Prompt", argument=True),
                    FormField("max_tokens", "Tokens to generate"),
                    FormField("temperature", "Temperature"),
                    FormField("top_k", "Top k (optional)"),
                    FormField("seed", "Seed (optional)"),
                ),
            ),
            train_job_type="text.train",
            default_setting="default_text_model",
            datasets={".txt": "shared.data.datasets:normalize_text"},
            # A first version early (within a minute on 2 CPU cores: epochs are 100,000-character
            # slices of the corpus, about 6 s each alone), then better ones as training goes on.
            bootstrap=TrainingSpec(
                "text.train",
                {
                    "preset": "small",
                    "epochs": 150,
                    "epoch_chars": 100_000,
                    "max_chars": 1_000_000,
                    "version_every": 10,
                },
            ),
        )
    )
    register(
        ModelKind(
            "image",
            loader="worker.ml.loaders:load_image",
            scheduler="worker.scheduler:image_scheduler",
            generate=GenerateForm(
                "image.generate",
                "Images",
                "Generate images",
                (FormField("n", "Number of images"), FormField("seed", "Seed (optional)")),
            ),
            train_job_type="image.train",
            default_setting="default_image_model",
            datasets={
                ".zip": "shared.data.datasets:normalize_zip_images",
                ".npz": "shared.data.datasets:normalize_npz_images",
            },
            bootstrap=TrainingSpec(
                "image.train",
                {"preset": "default", "epochs": 100, "batch_size": 32, "version_every": 5},
            ),
        )
    )


_register_builtin()
