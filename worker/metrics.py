"""The worker's metrics: attempts, queue wait and run time, model passes, output, cache, leases.

Recorded by whichever process runs the jobs. Under the prefork pool each child writes its values
to its worker's metrics folder (multiprocess mode) and the worker's endpoint serves their sum; a
thread-pool worker is one process. The buckets are part of the contract: docs/deployment.md
lists them, and the dashboards' quantiles are read from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from shared.delivery import lanes

# Publish to claim: milliseconds for an idle worker, up to an hour behind a long backlog.
QUEUE_WAIT_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
# Claim to end: a cached generation (tens of ms) up to the train time limit (6 h).
RUN_BUCKETS_S = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
)  # fmt: skip
# Rows per forward pass: powers of two up to the largest max batch (8192).
PASS_ROWS_BUCKETS = tuple(float(2**i) for i in range(14))
# One forward pass's compute, or its wait: half a millisecond to ten seconds.
PASS_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
# The pass histograms' names: a worker's fleet announcement sums their samples.
PASS_ROWS_NAME = "aigc_model_pass_rows"
PASS_COMPUTE_NAME = "aigc_model_pass_seconds"
PASS_WAIT_NAME = "aigc_model_pass_wait_seconds"
DUTY_NAME = "aigc_model_duty_cycle"  # read back, by model, into the fleet announcement

ATTEMPTS = Counter(
    "aigc_jobs_finished_total",
    "Attempts ended, by job type and outcome: succeeded, failed, timed_out and canceled end "
    "their job; retrying and lease_lost leave it to run again.",
    ["type", "outcome"],
)
QUEUE_WAIT = Histogram(
    "aigc_job_queue_wait_seconds",
    "From a job's message (its publish) to its claim, by lane.",
    ["lane"],
    buckets=QUEUE_WAIT_BUCKETS_S,
)
RUN_TIME = Histogram(
    "aigc_job_run_seconds",
    "From a job's claim to the end of the attempt, by job type.",
    ["type"],
    buckets=RUN_BUCKETS_S,
)
PASS_ROWS = Histogram(
    PASS_ROWS_NAME,
    "Rows (text requests, images) in one forward pass, by model kind.",
    ["kind"],
    buckets=PASS_ROWS_BUCKETS,
)
PASS_COMPUTE = Histogram(
    PASS_COMPUTE_NAME,
    "Compute time of one forward pass, by model kind.",
    ["kind"],
    buckets=PASS_BUCKETS_S,
)
PASS_WAIT = Histogram(
    PASS_WAIT_NAME,
    "How long a forward pass waited to start once its rows were there and the model was free "
    "(gathering company for the batch), by model kind.",
    ["kind"],
    buckets=PASS_BUCKETS_S,
)
DUTY = Gauge(
    DUTY_NAME,
    "Share of the last minute a loaded model's owner thread spent inside forward passes: the "
    "device's duty cycle, what a GPU operator scales on. By model kind and model version.",
    ["kind", "model"],
    multiprocess_mode="livemax",  # one process owns a model; a dead one's value is dropped
)
TOKENS = Counter("aigc_generated_tokens_total", "Tokens generated; its rate is tokens/s.")
IMAGES = Counter("aigc_generated_images_total", "Images generated; its rate is images/s.")
CACHE_HITS = Counter(
    "aigc_model_cache_hits_total", "Model uses served by an already loaded model.", ["kind"]
)
CACHE_MISSES = Counter(
    "aigc_model_cache_misses_total", "Model uses that had to load the model first.", ["kind"]
)
LOADS = Counter("aigc_model_loads_total", "Models loaded from their files, by kind.", ["kind"])
LEASE_FAILURES = Counter(
    "aigc_lease_renewal_failures_total",
    "Lease renewals that failed (the database did not answer); a lease outlasts one.",
)


def claimed(jobs: Iterable[Any]) -> None:
    """Record how long each claimed job's message waited, from its publish to its claim."""
    for job in jobs:
        if job.published_at is not None and job.started_at is not None:
            waited = (job.started_at - job.published_at).total_seconds()
            QUEUE_WAIT.labels(lanes.lane_of(job)).observe(max(waited, 0.0))


def attempt_ended(ctx: Any, outcome: str, failed_items: int = 0) -> None:
    """Record how a job's attempt ended and how long it ran, once: whoever saw its end first.

    The keeper ends a job past its deadline, or one that ignored its cancel, even while its
    thread runs on (which may return long after, or never).
    """
    if ctx.first_end():
        # A batch's chunk counts as many attempts as it carries items (the counter is work),
        # those of its items that failed alone as failed.
        ATTEMPTS.labels(ctx.job.type, outcome).inc((ctx.job.item_count or 1) - failed_items)
        if failed_items:
            ATTEMPTS.labels(ctx.job.type, "failed").inc(failed_items)
        RUN_TIME.labels(ctx.job.type).observe(ctx.ran_s)


def model_pass(kind: str, rows: int, wait_s: float, compute_s: float) -> None:
    """Record one forward pass: its rows, its wait and its compute."""
    PASS_ROWS.labels(kind).observe(rows)
    PASS_WAIT.labels(kind).observe(wait_s)
    PASS_COMPUTE.labels(kind).observe(compute_s)


def duty_cycle(kind: str, model: str, share: float) -> None:
    """Set a loaded model's duty cycle (its owner thread's busy share of the recent past)."""
    DUTY.labels(kind, model).set(share)
