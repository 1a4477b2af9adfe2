"""The registry of job types: name, params schema, queue and handler.

Handlers are named by import path and resolved only inside the worker, so the API can validate
and route every type without importing model code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from shared.config import Settings
from shared.errors import InputError
from shared.models import kinds

Queue = Literal["generate", "train"]


@dataclass(frozen=True)
class JobType:
    """How one kind of job is validated, routed and run."""

    name: str
    params: type[BaseModel]
    queue: Queue
    handler: str  # "package.module:function", imported lazily by the worker
    model: Literal["required", "optional", "target", "none"] = "none"
    model_kind: str | None = None  # a registered kind (shared.models.kinds) of the model it uses
    # Seconds one attempt may run; None takes the queue's limit from the settings.
    time_limit_s: float | None = None
    # Estimates the peak memory (MiB) of a job from its params, checked before it is accepted.
    memory_mb: Callable[[Any], float] | None = None
    # Runs a batch's chunk in one call: (its context, the items' params) -> a result or error
    # each. Without one, the chunk's items run on threads with the plain handler.
    chunk_handler: str | None = None
    # Modules its handler imports whose first import is slow (Keras: up to a minute on a busy
    # machine, much of it holding the GIL): the worker imports them before it claims the job, so
    # that the lease keeper, starved meanwhile, is not yet keeping the job's lease.
    preload: tuple[str, ...] = ()

    def limit_s(self, settings: Settings) -> float:
        """Return the seconds one attempt of this type may run."""
        if self.time_limit_s is not None:
            return self.time_limit_s
        if self.queue == "train":
            return settings.train_time_limit_s
        return settings.generate_time_limit_s

    @staticmethod
    def resolve(path: str) -> Any:
        """Import and return a handler named ``module:function`` (worker side only)."""
        module, _, attr = path.partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, JobType] = {}
KERAS = ("keras",)  # what the built-in model job types preload


def register(job_type: JobType) -> JobType:
    """Add a job type to the registry, replacing one of the same name; its model kind must exist."""
    if job_type.model_kind is not None:
        kinds.get(job_type.model_kind)  # a plugin registers its kind before the kind's job types
    _REGISTRY[job_type.name] = job_type
    return job_type


def get(name: str) -> JobType:
    """Return the job type called ``name``, or raise InputError."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise InputError(f"unknown job type {name!r}; known types: {known}", field="type") from None


def all_types() -> list[JobType]:
    """Return every registered job type."""
    return sorted(_REGISTRY.values(), key=lambda t: t.name)


def time_limits(settings: Settings) -> dict[str, float]:
    """Return the time limit of every registered job type, by name."""
    return {t.name: t.limit_s(settings) for t in _REGISTRY.values()}


def load_plugins(modules: Iterable[str]) -> None:
    """Import modules that register extra job types (for example test-only types)."""
    for module in modules:
        importlib.import_module(module)


def _register_builtin() -> None:
    from shared.jobs import params
    from shared.models.presets import image_train_mb, text_train_mb

    register(
        JobType(
            "text.generate",
            params.TextGenerateParams,
            "generate",
            "worker.handlers.text:generate",
            model="required",
            model_kind="text",
            chunk_handler="worker.handlers.text:generate_chunk",
            preload=KERAS,
        )
    )
    register(
        JobType(
            "image.generate",
            params.ImageGenerateParams,
            "generate",
            "worker.handlers.image:generate",
            model="required",
            model_kind="image",
            chunk_handler="worker.handlers.image:generate_chunk",
            preload=KERAS,
        )
    )
    register(
        JobType(
            "text.train",
            params.TextTrainParams,
            "train",
            "worker.handlers.text_train:train",
            model="target",
            model_kind="text",
            memory_mb=text_train_mb,
            preload=KERAS,
        )
    )
    register(
        JobType(
            "image.train",
            params.ImageTrainParams,
            "train",
            "worker.handlers.image_train:train",
            model="target",
            model_kind="image",
            memory_mb=image_train_mb,
            preload=KERAS,
        )
    )


_register_builtin()
