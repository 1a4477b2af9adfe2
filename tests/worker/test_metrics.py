"""The worker's pass metrics: rows, the wait before a pass, its compute, and their buckets."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from worker.metrics import PASS_BUCKETS_S, PASS_ROWS_BUCKETS
from worker.scheduler import BatchStats


def _value(name: str, kind: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"kind": kind, **labels})


def test_a_pass_waits_from_when_it_could_have_started() -> None:
    kind = f"test-{uuid.uuid4().hex[:8]}"  # a series of its own in the process's registry
    stats = BatchStats(kind)
    stats.record(4, started=10.0, ended=10.5, oldest=9.0)  # its rows waited a second, idle model
    stats.record(2, started=10.6, ended=11.0, oldest=9.5)  # busy until 10.5: waited 0.1 s
    assert stats.calls == 2 and stats.rows == [4, 2]
    assert _value("aigc_model_pass_rows_sum", kind) == 6
    assert _value("aigc_model_pass_wait_seconds_sum", kind) == pytest.approx(1.1)
    assert _value("aigc_model_pass_seconds_sum", kind) == pytest.approx(0.9)
    assert _value("aigc_model_pass_rows_count", kind) == 2


def test_the_pass_histograms_have_the_documented_buckets() -> None:
    kind = f"test-{uuid.uuid4().hex[:8]}"
    BatchStats(kind).record(1, started=1.0, ended=1.1, oldest=1.0)
    for name, buckets in (
        ("aigc_model_pass_rows", PASS_ROWS_BUCKETS),
        ("aigc_model_pass_seconds", PASS_BUCKETS_S),
        ("aigc_model_pass_wait_seconds", PASS_BUCKETS_S),
    ):
        bounds = {
            float(sample.labels["le"])
            for family in REGISTRY.collect()
            for sample in family.samples
            if sample.name == f"{name}_bucket" and sample.labels.get("kind") == kind
        }
        assert bounds == {*buckets, float("inf")}, name
