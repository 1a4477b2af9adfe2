"""Metrics, queue depth and JSON logs, through a stack of their own (PostgreSQL + private Redis).

The counters are compared with the jobs table exactly, so this stack runs these tests' jobs
and nothing else. Its workers and reconciler serve metrics on ports of their own, and every
process writes JSON lines. The drain test runs first: it stops the generate worker, which a
later test leaves with a thread hung for good (a job past its deadline that ignores it).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from ops.processes import METRICS_PORT_OFFSETS
from shared.delivery.lanes import BATCH, lane_of
from shared.jobs.status import JobStatus
from shared.tables import Job
from tests.conftest import Stack, private_stack
from tests.support import free_ports, wait_for

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
CELERY_NOTICE = "worker: "  # "worker: Warm shutdown (MainProcess)"
# The contract in docs/deployment.md, written out rather than read from the constants that
# build the histograms (a test comparing those with themselves could not fail).
DOCUMENTED_BUCKETS = {
    "aigc_http_request_duration_seconds": (
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ),
    "aigc_job_queue_wait_seconds": (
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
    ),
    "aigc_job_run_seconds": (
        0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600,
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Run a stack with metrics endpoints and JSON logs on a database and a Redis of its own."""
    with private_stack(
        tmp_path_factory.mktemp("observed"),
        "observed",
        metrics_port=free_ports(len(METRICS_PORT_OFFSETS)),
        log_format="json",
    ) as stack:
        yield stack


def scrape(url: str) -> Samples:
    """Return every sample an endpoint serves, keyed by name and labels."""
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def endpoint(stack: Stack, process: str) -> str:
    """Return the metrics URL of one process of the stack."""
    if process == "api":
        return f"{stack.api.base_url}/metrics"
    port = stack.settings.metrics_port + METRICS_PORT_OFFSETS[process]
    return f"http://127.0.0.1:{port}/metrics"


def by(samples: Samples, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    """Return the samples called ``name``, summed by the given labels' values."""
    out: Counter[tuple[str, ...]] = Counter()
    for (sample, pairs), value in samples.items():
        if sample == name:
            found = dict(pairs)
            out[tuple(found[label] for label in labels)] += int(value)
    return +out  # zeros dropped: a series at 0 and no series say the same


def worker_samples(stack: Stack) -> Samples:
    """Return the two workers' samples, the generate worker's and the train worker's together."""
    merged: Samples = {}
    for process in ("generate", "train"):
        for key, value in scrape(endpoint(stack, process)).items():
            merged[key] = merged.get(key, 0.0) + value
    return merged


def jobs(stack: Stack) -> list[Job]:
    """Return every row of the jobs table."""
    with stack.services.store.sessions() as session:
        return list(session.scalars(select(Job)))


def outcome(job: Job) -> str:
    """Return the metric outcome of a finished job's last attempt."""
    if job.status == JobStatus.FAILED and (job.error or {}).get("code") == "timeout":
        return "timed_out"
    return str(job.status)


def expected_attempts(rows: list[Job]) -> Counter[tuple[str, ...]]:
    """Return the attempts the workers must have counted, by type and outcome, from the rows."""
    expected: Counter[tuple[str, ...]] = Counter()
    for job in rows:
        if job.attempts:
            items = job.item_count or 1  # a batch's chunk counts its items
            expected[(job.type, outcome(job))] += items - (job.items_failed or 0)
            expected[(job.type, "failed")] += job.items_failed or 0
            expected[(job.type, "retrying")] += (job.attempts - 1) * items  # no worker died here
    return +expected


def waiting(stack: Stack, tenant: str) -> dict[str, int]:
    """Return the reconciler's gauges for one tenant's batch lane: held, published, messages."""
    samples = scrape(endpoint(stack, "reconciler"))
    rows = by(samples, "aigc_queue_waiting_rows", "lane", "tenant", "state")
    return {
        "held": rows[(BATCH, tenant, "held")],
        "published": rows[(BATCH, tenant, "published")],
        "messages": by(samples, "aigc_queue_messages", "lane")[(BATCH,)],
    }


def test_the_queue_depth_gauge_follows_a_batch_as_it_drains(observed: Stack) -> None:
    api, size = observed.client("drain"), 600
    chunk, window = observed.settings.batch_chunk_size, observed.settings.batch_window_items
    worker = observed.handle("generate")
    worker.stop()
    try:
        items = [{"custom_id": str(i), "params": {"seconds": 0.2}} for i in range(size)]
        resp = api.post("/v1/batches", json={"type": "test.sleep", "items": items})
        assert resp.status_code == 202, resp.text
        # Nothing consumes: the pacer released its window of chunks, and holds the rest as rows.
        assert waiting(observed, "drain") == {
            "held": size - window,
            "published": window,
            "messages": window // chunk,
        }
    finally:
        worker.start()
    seen = [size]
    while seen[-1]:
        now = waiting(observed, "drain")
        assert now["messages"] <= window // chunk, now
        seen.append(now["held"] + now["published"])
    assert seen == sorted(seen, reverse=True), "the waiting rows went up while draining"
    assert [n for n in seen if 0 < n < size], f"no sample caught the batch half drained: {seen}"


def test_the_counters_match_the_jobs_table(observed: Stack) -> None:
    api = observed.client("counted")
    before = scrape(endpoint(observed, "api"))
    plan: list[tuple[str, dict[str, Any]]] = [
        *[("test.sleep", {"seconds": 0})] * 4,
        *[("test.fail", {})] * 2,
        ("test.boom", {}),
        ("test.flaky", {"failures": 1}),
        ("test.hang", {}),  # its 2 s limit: timed out
        *[("test.train_sleep", {"seconds": 0})] * 3,  # the prefork worker's children
    ]
    ids = [api.submit(type_, params)["id"] for type_, params in plan]
    long = api.submit("test.sleep", {"seconds": 30, "steps": 300})["id"]
    api.wait(long, 60, statuses={"running"})
    assert api.post(f"/v1/jobs/{long}/cancel").status_code == 202
    items = [{"custom_id": str(i), "params": {"seconds": 0}} for i in range(70)]
    assert api.post("/v1/batches", json={"type": "test.sleep", "items": items}).status_code == 202
    for job_id in [*ids, long]:
        api.wait(job_id, 120)
    wait_for(lambda: all(j.status in {"succeeded", "failed", "canceled"} for j in jobs(observed)))

    def counted() -> Counter[tuple[str, ...]]:
        return by(worker_samples(observed), "aigc_jobs_finished_total", "type", "outcome")

    # A worker counts an attempt just after it writes the row: give the last counts a moment.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: counted() == expected_attempts(jobs(observed)), 30, 0.2)
    assert counted() == expected_attempts(jobs(observed))
    rows, samples = jobs(observed), worker_samples(observed)
    assert {o for _, o in by(samples, "aigc_jobs_finished_total", "type", "outcome")} >= {
        "succeeded",
        "failed",
        "timed_out",
        "canceled",
        "retrying",
    }
    # One claim per attempt: the queue wait by lane, the run time by type.
    lanes, types = Counter[tuple[str, ...]](), Counter[tuple[str, ...]]()
    for job in rows:
        lanes[(lane_of(job),)] += job.attempts
        types[(job.type,)] += job.attempts
    assert by(samples, "aigc_job_queue_wait_seconds_count", "lane") == +lanes
    assert by(samples, "aigc_job_run_seconds_count", "type") == +types
    # The API counted what it stored, by type, and the requests by route and status.
    after = scrape(endpoint(observed, "api"))
    accepted = Counter[tuple[str, ...]]()
    for job in rows:
        accepted[(job.type,)] += job.item_count or 1  # a batch's items, each
    assert by(after, "aigc_jobs_accepted_total", "type") == accepted
    posted = by(after, "aigc_http_requests_total", "method", "route", "status")
    posted.subtract(by(before, "aigc_http_requests_total", "method", "route", "status"))
    assert posted[("POST", "/v1/jobs", "202")] == len(plan) + 1
    assert posted[("POST", "/v1/batches", "202")] == 1
    assert posted[("POST", "/v1/jobs/<job_id>/cancel", "202")] == 1
    assert not [route for _, route, _ in posted if uuid_in(route)], "a raw path became a route"


def uuid_in(route: str) -> bool:
    """Return whether a route label holds an id (a raw path, not a URL rule)."""
    for part in route.split("/"):
        try:
            uuid.UUID(part)
            return True
        except ValueError:
            continue
    return False


def test_the_histograms_have_the_documented_buckets(observed: Stack) -> None:
    api = observed.client("buckets")
    api.wait(api.submit("test.sleep", {"seconds": 0})["id"], 60)
    samples = {**scrape(endpoint(observed, "api")), **worker_samples(observed)}
    for name, buckets in DOCUMENTED_BUCKETS.items():
        bounds: dict[frozenset[tuple[str, str]], set[float]] = {}
        for (sample, pairs), _ in samples.items():
            if sample == f"{name}_bucket":
                labels = dict(pairs)
                bound = float(labels.pop("le"))
                bounds.setdefault(frozenset(labels.items()), set()).add(bound)
        assert bounds, f"no {name} series"
        for series in bounds.values():
            assert series == {*buckets, float("inf")}, (name, sorted(series))


def log_lines(stack: Stack, process: str) -> list[dict[str, Any]]:
    """Return one process's log, every line parsed as JSON (a line that is not fails).

    Celery's shutdown notices are the exception: its signal handler writes them to stdout
    itself, past logging.
    """
    text = (Path(stack.tmp) / f"{process}.log").read_text()
    return [
        json.loads(line)
        for line in text.splitlines()
        if line.strip() and not line.startswith(CELERY_NOTICE)
    ]


def test_json_logs_carry_the_running_jobs_fields(observed: Stack) -> None:
    api = observed.client("logged")
    alone = api.wait(api.submit("test.boom", {})["id"], 60)
    batch = api.post(
        "/v1/batches", json={"type": "test.boom", "items": [{"custom_id": "a", "params": {}}]}
    )
    assert batch.status_code == 202, batch.text
    wait_for(lambda: api.get(f"/v1/batches/{batch.json()['id']}").json()["status"] == "failed", 60)
    lines = {p: log_lines(observed, p) for p in ("api", "generate", "train", "reconciler")}
    assert all(lines.values()), "a process wrote no log lines"
    crashed = {
        line["job_id"]: line for line in lines["generate"] if "handler crashed" in line["message"]
    }
    tenant = str(api.tenant_id)
    item = next(j for j in jobs(observed) if j.batch_id == uuid.UUID(batch.json()["id"]))
    for job_id, batch_id in ((alone["id"], None), (str(item.id), batch.json()["id"])):
        line = crashed[job_id]
        assert (line["batch_id"], line["tenant"], line["attempt"]) == (batch_id, tenant, 1), line
        assert line["level"] == "ERROR" and "RuntimeError" in line["exc_info"], line
    quiet = [line for line in lines["generate"] if "ready." in line["message"]]
    assert quiet and "job_id" not in quiet[0], "a line outside any job names one"
