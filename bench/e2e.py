"""End-to-end measures over the real stack, and the bare baselines they are compared with."""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import requests
from sqlalchemy import create_engine, text

from bench.stack import PG_URL
from shared.jobs.status import BATCH_TERMINAL, TERMINAL

NOOP = "bench.noop"
PROMPT = "The with statement"  # known to both the char and the word tokenizer
BATCH_POLL_S = 0.5


class Client:
    """A thread-safe HTTP client of the bench API (one session per thread)."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        # The one place the bench authenticates: every request of every session sends it.
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        """Return this thread's session."""
        if not hasattr(self._local, "s"):
            self._local.s = requests.Session()
            self._local.s.headers.update(self.headers)
        return self._local.s

    def submit(self, type_: str, params: dict[str, Any], model: str | None = None) -> str:
        """Submit one job; return its id."""
        resp = self.http.post(
            f"{self.base}/v1/jobs",
            json={"type": type_, "model": model, "params": params},
            timeout=30,
        )
        resp.raise_for_status()
        return resp.json()["id"]

    def wait(self, job_id: str, timeout_s: float = 600) -> dict[str, Any]:
        """Long-poll the job until it is terminal (the API answers as soon as it ends)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.http.get(
                f"{self.base}/v1/jobs/{job_id}", params={"wait_s": 30}, timeout=60
            ).json()
            if job["status"] in TERMINAL:
                return job
        raise TimeoutError(job_id)


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(values: list[float]) -> dict[str, float]:
    """Return p50, p99 and the mean in milliseconds, and the sample count."""
    return {
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "mean_ms": statistics.fmean(values) * 1000,
        "samples": len(values),
    }


def text_params(i: int, max_tokens: int) -> dict[str, Any]:
    """Return the params of the i-th text job of a measure (its own seed)."""
    return {"prompt": PROMPT, "max_tokens": max_tokens, "seed": i}


def round_trip(
    client: Client, type_: str, params: dict[str, Any], model: str | None = None
) -> tuple[float, dict[str, Any]]:
    """Submit one job and long-poll it; return the seconds until the client saw it succeed."""
    started = time.perf_counter()
    job = client.wait(client.submit(type_, params, model))
    assert job["status"] == "succeeded", job
    return time.perf_counter() - started, job


def text_throughput(
    client: Client,
    model: str,
    concurrency: int,
    jobs: int,
    max_tokens: int,
    type_: str = "text.generate",
) -> dict[str, Any]:
    """Tokens/s from submit to terminal with ``concurrency`` clients each running jobs in turn."""
    results: list[dict[str, Any]] = []
    latencies: list[float] = []

    def one(i: int) -> None:
        seconds, job = round_trip(client, type_, text_params(i, max_tokens), model)
        latencies.append(seconds)
        results.append(job["result"])

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(jobs)))
    seconds = time.perf_counter() - started
    tokens = sum(r["completion_tokens"] for r in results)
    return {
        "tokens_per_s": tokens / seconds,
        "jobs": jobs,
        "seconds": seconds,
        "latency": summarize(latencies),
        "batching": [r["batching"] for r in results if r.get("batching")],
    }


def submit_batch(
    client: Client, type_: str, model: str | None, params: list[dict[str, Any]]
) -> str:
    """Submit one bulk batch with an item per params; return its id."""
    items = [{"custom_id": str(i), "params": p} for i, p in enumerate(params)]
    resp = client.http.post(
        f"{client.base}/v1/batches",
        json={"type": type_, "model": model, "items": items},
        timeout=600,
    )
    resp.raise_for_status()
    return resp.json()["id"]


def wait_batch(client: Client, batch_id: str) -> dict[str, Any]:
    """Poll a batch until it is terminal; return its status."""
    while True:
        batch = client.http.get(f"{client.base}/v1/batches/{batch_id}", timeout=30).json()
        if batch["status"] in BATCH_TERMINAL:
            return batch
        time.sleep(BATCH_POLL_S)


def batch_results(client: Client, batch_id: str) -> list[dict[str, Any]]:
    """Return the results of a batch's succeeded items (streamed JSONL, submit order)."""
    url = f"{client.base}/v1/batches/{batch_id}/results"
    with client.http.get(url, stream=True, timeout=600) as resp:
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    return [line["result"] for line in lines if line["status"] == "succeeded"]


def run_batch(
    client: Client, type_: str, model: str | None, params: list[dict[str, Any]]
) -> dict[str, Any]:
    """Items/s of one bulk batch from submit to completed."""
    started = time.perf_counter()
    batch_id = submit_batch(client, type_, model, params)
    accepted = time.perf_counter() - started
    batch = wait_batch(client, batch_id)
    seconds = time.perf_counter() - started
    return {
        "id": batch_id,
        "items": len(params),
        "items_per_s": len(params) / seconds,
        "seconds": seconds,
        "accept_s": accepted,
        "status": batch["status"],
        "succeeded": batch["counts"]["succeeded"],
    }


def _rate(
    fn: Callable[[int], None], clients: int, total: int, latencies: list[float]
) -> dict[str, Any]:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(fn, range(total)))
    seconds = time.perf_counter() - started
    return {"per_s": total / seconds, "count": total, **summarize(latencies)}


def accept_rate(client: Client, clients: int, total: int) -> dict[str, Any]:
    """Jobs/s the API accepts, and submit latency percentiles, at ``clients`` concurrent clients."""
    latencies: list[float] = []

    def one(_: int) -> None:
        started = time.perf_counter()
        client.submit(NOOP, {})
        latencies.append(time.perf_counter() - started)

    return _rate(one, clients, total, latencies)


def raw_publish_rate(clients: int, total: int) -> dict[str, Any]:
    """Messages/s of bare Celery publishes of an id-sized message over the same Redis."""
    from bench.raw_celery import PUBLISH_ONLY, raw

    latencies: list[float] = []

    def one(_: int) -> None:
        started = time.perf_counter()
        raw.send_task("raw.echo", args=[str(uuid.uuid4())], queue=PUBLISH_ONLY)
        latencies.append(time.perf_counter() - started)

    try:
        return _rate(one, clients, total, latencies)
    finally:
        with raw.connection_for_write() as conn:
            conn.default_channel.queue_purge(PUBLISH_ONLY)


def raw_insert_rate(clients: int, total: int) -> dict[str, Any]:
    """Rows/s of bare single-row INSERT transactions over the same PostgreSQL."""
    engine = create_engine(PG_URL, pool_size=clients, max_overflow=0)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bench_rows (id uuid PRIMARY KEY, "
                "body jsonb, created_at timestamptz DEFAULT now())"
            )
        )
    latencies: list[float] = []

    def one(_: int) -> None:
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO bench_rows (id, body) VALUES (:id, '{}')"), {"id": uuid.uuid4()}
            )
        latencies.append(time.perf_counter() - started)

    try:
        return _rate(one, clients, total, latencies)
    finally:
        engine.dispose()


def empty_round_trips(client: Client, samples: int) -> list[float]:
    """Seconds from submit until the client sees an empty job succeeded (long poll)."""
    return [round_trip(client, NOOP, {})[0] for _ in range(samples)]


def raw_round_trips(samples: int) -> list[float]:
    """Seconds for a bare Celery task round trip (send_task, run, result.get) over Redis."""
    from bench.raw_celery import QUEUE, raw

    out = []
    for _ in range(samples):
        started = time.perf_counter()
        raw.send_task("raw.echo", queue=QUEUE).get(timeout=60)
        out.append(time.perf_counter() - started)
    return out


def train_job(client: Client, params: dict[str, Any], model: str) -> dict[str, Any]:
    """Seconds a text.train job ran (claim to success), and its last progress."""
    job = client.wait(client.submit("text.train", params, model), timeout_s=1800)
    assert job["status"] == "succeeded", job
    seconds = (
        datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    ).total_seconds()
    return {"seconds": seconds, "progress": job["progress"]}
