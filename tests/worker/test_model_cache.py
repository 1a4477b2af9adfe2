"""The model cache: a hit, a miss and a load counted per model kind; loader and scheduler from
the kind's registry entry."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from prometheus_client import REGISTRY

from shared.config import Settings
from shared.data.stores.cache import sha256_file
from shared.models import kinds
from shared.models.registry import ResolvedModel
from tests.fixtures import toykind
from worker.model_cache import ModelCache


def _counts(kind: str) -> tuple[float, float, float]:
    return tuple(  # type: ignore[return-value]
        REGISTRY.get_sample_value(f"aigc_model_{name}_total", {"kind": kind}) or 0.0
        for name in ("cache_hits", "cache_misses", "loads")
    )


def _cache(tmp_path: Path) -> tuple[ModelCache, str]:
    """Return a cache over one toy model version of a kind of its own (its own metric series)."""
    kind = f"test-{uuid.uuid4().hex[:8]}"
    kinds.register(replace(kinds.get(toykind.KIND), name=kind, datasets={}))
    path = tmp_path / "weights.npy"
    np.save(path, np.array([1.0, 2.5], np.float32))
    resolved = ResolvedModel("m", kind, 1, uuid.uuid4(), sha256_file(path), {})
    registry = SimpleNamespace(resolve=lambda ref, kind: resolved)
    artifacts = SimpleNamespace(get=lambda _: None, local_copy=lambda _: path)
    return ModelCache(registry, artifacts, capacity=1), kind  # type: ignore[arg-type]


def test_hits_misses_and_loads_are_counted(tmp_path: Path) -> None:
    cache, kind = _cache(tmp_path)
    cache.get("m")  # not loaded yet: a miss, and a load
    cache.get("m")  # the registry names the same version: a hit
    cache.get("m:1")  # an exact version, loaded: a hit
    cache.get("m:1")  # and now found without the registry: a hit
    assert _counts(kind) == (3.0, 1.0, 1.0)


def test_the_kinds_entry_names_the_loader_and_the_scheduler(tmp_path: Path) -> None:
    cache, _ = _cache(tmp_path)
    with cache.use("m:1") as loaded:
        assert loaded.model.tolist() == [1.0, 2.5]  # the toy loader read the verified file
        batcher = loaded.batcher(Settings())
        assert isinstance(batcher, toykind.ToyScheduler)
        assert batcher is loaded.batcher(Settings())  # made once per loaded model
        text = batcher.submit(toykind.ToyRequest("hi", 2)).result(timeout=1)
    assert text == "hi hi (3.5)"
