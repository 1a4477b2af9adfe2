"""Per-process cache of loaded models, keyed by (name, version), with LRU eviction.

A model is loaded once per worker process and reused by every job; a newly registered version is
just another key, loaded on first use, so no restart is needed. A job pins the model it uses: an
evicted model stops taking new jobs at once but is closed only when its last job lets go, so no
request in flight is ever stranded on a closed model. How a model is loaded and batched is its
kind's business (shared.models.kinds): the cache calls the loader and scheduler factory the
kind's entry names.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.data.artifacts import ArtifactStore
from shared.models import kinds
from shared.models.registry import ModelRegistry, ResolvedModel
from shared.models.tokenizers import Tokenizer
from worker import metrics

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready to run: what its kind's loader built, and what describes it."""

    resolved: ResolvedModel
    model: Any  # keras.Model for the built-in kinds (the generator for image models)
    generator: Any = None  # TextGenerator for text models
    tokenizer: Tokenizer | None = None
    scheduler: Any = None  # the model-owner thread, started on first batched use
    pins: int = 0  # jobs using the model now
    evicted: bool = False  # out of the cache; closed when the last pin goes
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def batcher(self, settings: Settings) -> Any:
        """Return the model's dynamic-batching scheduler, starting it on first use."""
        with self._lock:
            if self.scheduler is None:
                factory = kinds.resolve(kinds.get(self.resolved.kind).scheduler)
                self.scheduler = factory(self, settings)
            return self.scheduler

    def close(self) -> None:
        """Stop the scheduler thread (after eviction)."""
        if self.scheduler is not None:
            self.scheduler.close()


class ModelCache:
    """Loads registry versions (sha256 checked, safe mode) and keeps the most recent ones."""

    def __init__(self, registry: ModelRegistry, artifacts: ArtifactStore, capacity: int) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.capacity = capacity
        self._models: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._by_ref: dict[tuple[str, str | None], tuple[str, int]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def use(self, ref: str, kind: str | None = None) -> Iterator[LoadedModel]:
        """Yield the loaded model a reference names, pinned so eviction cannot close it."""
        loaded = self.get(ref, kind, pin=True)
        try:
            yield loaded
        finally:
            self._unpin(loaded)

    def _unpin(self, loaded: LoadedModel) -> None:
        with self._lock:
            loaded.pins -= 1
            close = loaded.evicted and loaded.pins == 0
        if close:
            loaded.close()

    def get(self, ref: str, kind: str | None = None, *, pin: bool = False) -> LoadedModel:
        """Return the loaded model a reference names, loading it on first use."""
        with self._lock:
            # Jobs name an exact version (resolved at submit), and a version never changes, so
            # a loaded one is found without asking the registry again.
            hit = self._by_ref.get((ref, kind))
            if hit is not None and hit in self._models:
                metrics.CACHE_HITS.labels(self._models[hit].resolved.kind).inc()
                return self._touch(hit, pin)
        resolved = self.registry.resolve(ref, kind)
        key = (resolved.name, resolved.version)
        with self._lock:
            if ":" in ref:
                self._by_ref[(ref, kind)] = key
            cached = key in self._models
            (metrics.CACHE_HITS if cached else metrics.CACHE_MISSES).labels(resolved.kind).inc()
            if not cached:
                self._models[key] = self._load(resolved)
                self._evict_over_capacity(keep=key)
            return self._touch(key, pin)

    def _touch(self, key: tuple[str, int], pin: bool) -> LoadedModel:
        self._models.move_to_end(key)
        loaded = self._models[key]
        loaded.pins += int(pin)
        return loaded

    def _evict_over_capacity(self, keep: tuple[str, int]) -> None:
        # Least recently used first, preferring models no job is using right now.
        while len(self._models) > self.capacity:
            others = [k for k in self._models if k != keep]
            idle = [k for k in others if self._models[k].pins == 0]
            key = idle[0] if idle else others[0]
            old = self._models.pop(key)
            old.evicted = True
            log.info("evicted model %s:%s (%d jobs still using it)", *key, old.pins)
            if old.pins == 0:
                old.close()

    def _load(self, resolved: ResolvedModel) -> LoadedModel:
        loader = kinds.resolve(kinds.get(resolved.kind).loader)
        # Keras loads a file by path: a store elsewhere lends a verified local copy.
        path: Path = self.artifacts.local_copy(self.artifacts.get(resolved.artifact_id))
        loaded = loader(resolved, path)
        metrics.LOADS.labels(resolved.kind).inc()
        log.info("loaded model %s (%s)", resolved.ref, resolved.kind)
        return loaded

    def warm(self, refs: list[str]) -> None:
        """Load the given models now; a model that fails to load is logged and skipped."""
        for ref in refs:
            try:
                self.get(ref)
            except Exception as exc:
                log.warning("could not warm model %s: %s", ref, exc)


_cache: ModelCache | None = None
_cache_lock = threading.Lock()


def model_cache(
    registry: ModelRegistry, artifacts: ArtifactStore, settings: Settings
) -> ModelCache:
    """Return this process's model cache (made from the first call's arguments)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ModelCache(registry, artifacts, settings.model_cache_size)
        return _cache
