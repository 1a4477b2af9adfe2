"""The worker's pass metrics: rows, the wait before a pass, its compute, and their buckets."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from worker.scheduler import BatchStats

# The contract in docs/deployment.md (the dashboard's quantiles are read from these bounds),
# written out here rather than read from the constants that build the histograms.
PASS_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
DOCUMENTED_BUCKETS = {
    "aigc_model_pass_rows": tuple(2**i for i in range(14)),  # 1, 2, 4, ... 8192
    "aigc_model_pass_seconds": PASS_BUCKETS_S,
    "aigc_model_pass_wait_seconds": PASS_BUCKETS_S,
}


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
    for name, buckets in DOCUMENTED_BUCKETS.items():
        bounds = {
            float(sample.labels["le"])
            for family in REGISTRY.collect()
            for sample in family.samples
            if sample.name == f"{name}_bucket" and sample.labels.get("kind") == kind
        }
        assert bounds == {*buckets, float("inf")}, name
