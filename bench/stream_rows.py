"""Issue 11's rows: how soon streamed text arrives, and what streaming readers cost decoding."""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sseclient

from bench import cpu, e2e
from bench.context import Bench
from bench.stack import THREADS

STREAM_TOKENS = 256
FIRST_TEXT_JOBS = 5
READERS = 10


def stream_job(client: e2e.Client, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """Submit a text job and read its event stream: seconds to the first text and to the result."""
    started = time.perf_counter()
    job_id = client.submit("text.generate", params, model)
    first = None
    url = f"{client.base}/v1/jobs/{job_id}/events"
    with client.http.get(url, stream=True, timeout=600) as resp:
        resp.raise_for_status()
        for message in sseclient.SSEClient(resp.iter_content(chunk_size=None)).events():
            if message.event == "text" and first is None:
                first = time.perf_counter() - started
            if message.event == "result":
                job = json.loads(message.data)
                assert job["status"] == "succeeded", job
                seconds = time.perf_counter() - started
                return {"first_s": first or seconds, "result_s": seconds, "job": job}
    raise RuntimeError(f"the stream of {job_id} ended before its result")


def first_text(b: Bench) -> None:
    """Row 15: a lone `seed` 256-token job read over SSE: the first text against the result."""
    model = b.models["seed"]
    runs = [
        stream_job(b.client, model, e2e.text_params(i, STREAM_TOKENS))
        for i in range(FIRST_TEXT_JOBS)
    ]
    first = statistics.median(r["first_s"] for r in runs)
    full = statistics.median(r["result_s"] for r in runs)
    b.report.raw["first_text"] = [{k: v for k, v in r.items() if k != "job"} for r in runs]
    b.report.row(
        "15",
        f"a lone `seed` {STREAM_TOKENS}-token job over SSE: submit→first streamed text (p50)",
        f"{first * 1000:.0f} ms",
        f"submit→result event: {full * 1000:.0f} ms",
        first / full,
        None,
        f"{FIRST_TEXT_JOBS} jobs",
    )


def readers(b: Bench) -> None:
    """Row 16: text tokens/s at concurrency 64 with ten clients streaming, against none."""
    model, jobs = b.models["small"], b.args.stream_jobs
    measured = {}
    for streaming in (0, READERS):
        with cpu.Meter(b.platform()) as meter:
            measured[streaming] = _throughput(b.client, model, jobs, streaming)
        label = f"`small` {STREAM_TOKENS} tokens, {streaming} in 64 streaming"
        b.report.cpu_row("16", label, jobs, meter.per_job(jobs))
    none, ten = measured[0], measured[READERS]
    b.report.raw["stream_readers"] = measured
    b.report.row(
        "16",
        f"text tokens/s, `small`, {STREAM_TOKENS}-token jobs, concurrency {THREADS}, "
        f"{READERS} of the clients reading SSE streams",
        f"{ten:.0f}",
        f"every client long-polling: {none:.0f}",
        ten / none,
        None,
        f"{jobs} each",
    )


def _throughput(client: e2e.Client, model: str, jobs: int, streaming: int) -> float:
    """Tokens/s of ``jobs`` jobs from 64 clients; ``streaming`` jobs in 64 are read over SSE.

    So about that many streams are open at any time, beside the long polls of the rest.
    """
    tokens: list[int] = []

    def one(i: int) -> None:
        params = e2e.text_params(i, STREAM_TOKENS)
        if i % THREADS < streaming:
            job = stream_job(client, model, params)["job"]
        else:
            job = e2e.round_trip(client, "text.generate", params, model)[1]
        tokens.append(job["result"]["completion_tokens"])

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(jobs)))
    return sum(tokens) / (time.perf_counter() - started)
