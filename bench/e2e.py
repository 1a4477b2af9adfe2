"""End-to-end measures over the real stack, each beside its baseline from the same run."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from sqlalchemy import create_engine, text

from bench.stack import PG_URL
from shared.jobs.status import BATCH_TERMINAL, TERMINAL

POLL_S = 0.002


class Client:
    """A thread-safe HTTP client of the bench API (one session per thread)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        if not hasattr(self._local, "s"):
            self._local.s = requests.Session()
        return self._local.s

    def submit(self, type_: str, params: dict[str, Any], model: str | None = None) -> str:
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

    def one(i: int) -> None:
        params = {"prompt": "def main(", "max_tokens": max_tokens, "seed": i}
        job = client.wait(client.submit(type_, params, model))
        assert job["status"] == "succeeded", job
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
        "batching": [r.get("batching") for r in results if r.get("batching")],
    }


def image_batch(client: Client, model: str, images: int) -> dict[str, Any]:
    """Images/s for one bulk batch of ``images`` single-image items, submit to completed."""
    items = [{"custom_id": str(i), "params": {"n": 1, "seed": i}} for i in range(images)]
    started = time.perf_counter()
    resp = client.http.post(
        f"{client.base}/v1/batches",
        json={"type": "image.generate", "model": model, "items": items},
        timeout=300,
    )
    resp.raise_for_status()
    accepted = time.perf_counter() - started
    batch_id = resp.json()["id"]
    while True:
        batch = client.http.get(f"{client.base}/v1/batches/{batch_id}", timeout=30).json()
        if batch["status"] in BATCH_TERMINAL:
            break
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    lines = 0
    with client.http.get(
        f"{client.base}/v1/batches/{batch_id}/results", stream=True, timeout=300
    ) as results:
        for line in results.iter_lines():
            lines += bool(line)
    return {
        "images_per_s": images / seconds,
        "seconds": seconds,
        "accept_s": accepted,
        "status": batch["status"],
        "succeeded": batch["counts"]["succeeded"],
        "result_lines": lines,
    }


def accept_rate(client: Client, clients: int, requests_total: int) -> dict[str, Any]:
    """Jobs/s the API accepts, and submit latency percentiles, at ``clients`` concurrent clients."""
    latencies: list[float] = []

    def one(_: int) -> None:
        started = time.perf_counter()
        client.submit("bench.noop", {})
        latencies.append(time.perf_counter() - started)

    return _rate(one, clients, requests_total, latencies)


def _rate(
    fn: Callable[[int], None], clients: int, total: int, latencies: list[float]
) -> dict[str, Any]:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(fn, range(total)))
    seconds = time.perf_counter() - started
    return {
        "per_s": total / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def raw_publish_rate(clients: int, total: int) -> dict[str, Any]:
    """Messages/s of bare Celery publishes of an id-sized message over the same Redis."""
    from bench.raw_celery import raw

    latencies: list[float] = []

    def one(_: int) -> None:
        started = time.perf_counter()
        raw.send_task("raw.none", args=[str(uuid.uuid4())], queue="raw-publish-only")
        latencies.append(time.perf_counter() - started)

    result = _rate(one, clients, total, latencies)
    with raw.connection_for_write() as conn:
        conn.default_channel.queue_purge("raw-publish-only")
    return result


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

    result = _rate(one, clients, total, latencies)
    engine.dispose()
    return result


def empty_round_trips(client: Client, samples: int) -> list[float]:
    """Seconds from submit until the client sees an empty job succeeded."""
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        job = client.wait(client.submit("bench.noop", {}))
        assert job["status"] == "succeeded"
        out.append(time.perf_counter() - started)
    return out


def raw_round_trips(samples: int) -> list[float]:
    """Seconds for a bare Celery task round trip (send, run, result) over the same Redis."""
    from bench.raw_celery import raw

    out = []
    for _ in range(samples):
        started = time.perf_counter()
        raw.send_task("raw.echo", queue="raw").get(timeout=60, interval=POLL_S)
        out.append(time.perf_counter() - started)
    return out


def train_job(client: Client, params: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s of a text.train job: its trained tokens over its running time."""
    job = client.wait(client.submit("text.train", params, "bench-train"), timeout_s=1800)
    assert job["status"] == "succeeded", job
    from datetime import datetime

    seconds = (
        datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    ).total_seconds()
    return {"seconds": seconds, "progress": job["progress"]}


def summarize(values: list[float]) -> dict[str, float]:
    """Return p50 and p99 in milliseconds."""
    return {
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "mean_ms": statistics.fmean(values) * 1000,
    }
