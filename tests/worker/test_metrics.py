"""The worker's pass metrics: rows, the wait before a pass, its compute, their buckets, the duty."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from worker.scheduler import BatchStats, DutyCycle

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


def test_the_duty_cycle_is_the_busy_share_of_the_last_window() -> None:
    duty = DutyCycle(window_s=10.0, now=0.0)
    duty.add(1.0, 3.0)
    assert duty.share(4.0) == pytest.approx(0.5)  # 2 s busy of the 4 s since it was loaded
    duty.add(5.0, 9.0)
    assert duty.share(10.0) == pytest.approx(0.6)  # a whole window now: 6 s of 10
    assert duty.share(12.0) == pytest.approx(0.5)  # the first pass half out of the window
    assert duty.share(13.0) == pytest.approx(0.4)  # and wholly out
    assert duty.share(30.0) == 0.0  # idle a whole window


def test_the_duty_cycle_is_published_by_model() -> None:
    kind = f"test-{uuid.uuid4().hex[:8]}"
    stats = BatchStats(kind, "small:3", duty=DutyCycle(window_s=10.0, now=0.0))
    stats.record(8, started=0.0, ended=1.0, oldest=0.0)
    assert _value("aigc_model_duty_cycle", kind, model="small:3") == pytest.approx(1.0)
    stats.refresh(now=4.0)  # idle since: 1 s busy of 4
    assert _value("aigc_model_duty_cycle", kind, model="small:3") == pytest.approx(0.25)
