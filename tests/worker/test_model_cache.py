"""The model cache's metrics: a hit, a miss and a load, counted per model kind."""

from __future__ import annotations

import sys
import types
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from shared.models.registry import ResolvedModel
from worker.model_cache import ModelCache


def _counts(kind: str) -> tuple[float, float, float]:
    return tuple(  # type: ignore[return-value]
        REGISTRY.get_sample_value(f"aigc_model_{name}_total", {"kind": kind}) or 0.0
        for name in ("cache_hits", "cache_misses", "loads")
    )


def test_hits_misses_and_loads_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    kind = f"test-{uuid.uuid4().hex[:8]}"  # a series of its own in the process's registry
    resolved = ResolvedModel("m", kind, 1, uuid.uuid4(), "0" * 64, {})
    services = SimpleNamespace(
        registry=SimpleNamespace(resolve=lambda ref, kind: resolved),
        artifacts=SimpleNamespace(get=lambda _: None, local_copy=lambda _: Path("m.keras")),
    )
    # No Keras here: the loader hands back a stand-in model.
    persist = types.ModuleType("worker.ml.persist")
    persist.load_model_verified = lambda path, sha256: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "worker.ml.persist", persist)
    cache = ModelCache(services, capacity=1)  # type: ignore[arg-type]
    cache.get("m")  # not loaded yet: a miss, and a load
    cache.get("m")  # the registry names the same version: a hit
    cache.get("m:1")  # an exact version, loaded: a hit
    cache.get("m:1")  # and now found without the registry: a hit
    assert _counts(kind) == (3.0, 1.0, 1.0)
