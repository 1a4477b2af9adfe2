"""Rows 7 and 8: what a claim costs with a deep queue, and interactive latency under a batch."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from celery import Celery
from sqlalchemy import Engine, func, insert, literal, null, select, text, true

from bench import cpu, e2e
from shared.db import utcnow
from shared.delivery.lanes import INTERACTIVE
from shared.jobs.rows import JOBS
from shared.jobs.status import TERMINAL

# Filler jobs are queued but not due for a year: they stay in the table, unpublished and
# untouched by the reconciler, as a deep backlog of other work would.
FILLER_DELAY = timedelta(days=365)
POLL_S = 0.1
HOLD_CLIENTS = 8  # clients submitting the held jobs (their accept path is not measured)
ENDED = tuple(str(s) for s in TERMINAL)


def hold(celery: Celery, client: e2e.Client, node: str, jobs: int) -> list[uuid.UUID]:
    """Submit ``jobs`` bench.noop jobs through the API while worker ``node`` takes none of them.

    The worker stops consuming the interactive lane (Celery's remote control) until ``drain``,
    so the jobs are stored and published as any client's, and wait in the broker.
    """
    celery.control.cancel_consumer(INTERACTIVE, destination=[node], reply=True)
    with ThreadPoolExecutor(HOLD_CLIENTS) as pool:
        ids = list(pool.map(lambda _: client.submit(e2e.NOOP, {}), range(jobs)))
    return [uuid.UUID(i) for i in ids]


def drain(
    celery: Celery, engine: Engine, node: str, roots: dict[str, int], ids: list[uuid.UUID]
) -> dict[str, Any]:
    """CPU per job while worker ``node``, consuming again, claims and runs the held jobs."""
    with cpu.Meter(roots) as meter:
        started = time.perf_counter()
        celery.control.add_consumer(INTERACTIVE, destination=[node], reply=True)
        _wait_ended(engine, ids)
        seconds = time.perf_counter() - started
    n = len(ids)
    return {"jobs": n, "seconds": seconds, "per_s": n / seconds, "cpu": meter.per_job(n)}


def add_filler(engine: Engine, template: uuid.UUID, count: int) -> None:
    """Add ``count`` copies of a queued job, unpublished and not due, with fresh ids; VACUUM.

    Copied server-side from a job the API stored, so they carry every column a real job has.
    """
    later = utcnow() + FILLER_DELAY
    # Never published: jobs waiting in the table, not in the broker.
    fresh = {"id": func.gen_random_uuid(), "published_at": null(), "available_at": literal(later)}
    cols = list(JOBS.c)
    series = func.generate_series(1, count).table_valued("n")
    copies = (
        select(*(fresh.get(c.name, c) for c in cols))
        .select_from(JOBS.join(series, true()))
        .where(JOBS.c.id == template)
    )
    with engine.begin() as conn:
        conn.execute(insert(JOBS).from_select(cols, copies))
    vacuum(engine)


def remove_filler(engine: Engine) -> None:
    """Delete the filler jobs and VACUUM, so later rows see an ordinary table."""
    with engine.begin() as conn:
        conn.execute(JOBS.delete().where(JOBS.c.available_at > utcnow() + FILLER_DELAY / 2))
    vacuum(engine)


def vacuum(engine: Engine) -> None:
    """VACUUM ANALYZE the jobs table, so autovacuum does not start in the middle of a measure."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE jobs"))


def wait_idle(engine: Engine, timeout_s: float = 600) -> None:
    """Wait until no job that is due is queued or running (the filler never is)."""
    stmt = text(
        "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') "
        "AND (available_at IS NULL OR available_at <= now())"
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if not conn.scalar(stmt):
                return
        time.sleep(0.5)
    raise TimeoutError("the stack did not drain")


def _wait_ended(engine: Engine, ids: list[uuid.UUID]) -> None:
    # The lane is FIFO: poll the last job by key, then check them all (cheap next to claims).
    last = text("SELECT status FROM jobs WHERE id = :id")
    count = text("SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status = ANY(:ended)")
    with engine.connect() as conn:
        while conn.scalar(last, {"id": ids[-1]}) not in ENDED:
            conn.commit()
            time.sleep(POLL_S)
        while conn.scalar(count, {"ids": ids, "ended": list(ENDED)}) < len(ids):
            conn.commit()
            time.sleep(POLL_S)


def under_batch(
    client: e2e.Client,
    batch: tuple[str, str | None, list[dict[str, Any]]],
    interactive: Callable[[], float],
) -> dict[str, Any]:
    """Run ``interactive`` round trips one after another for as long as a batch drains.

    ``batch`` is the batch's type, model and items' params; ``interactive`` returns the seconds
    of one round trip.
    """
    type_, model, params = batch
    started = time.perf_counter()
    batch_id = e2e.submit_batch(client, type_, model, params)
    accepted = time.perf_counter() - started
    finished: dict[str, Any] = {}

    def drain() -> None:
        finished["batch"] = e2e.wait_batch(client, batch_id)
        finished["seconds"] = time.perf_counter() - started

    waiter = threading.Thread(target=drain, name="batch-waiter")
    waiter.start()
    latencies: list[float] = []
    while waiter.is_alive():
        latencies.append(interactive())
    waiter.join()
    return {
        "id": batch_id,
        "items": len(params),
        "items_per_s": len(params) / finished["seconds"],
        "seconds": finished["seconds"],
        "accept_s": accepted,
        "status": finished["batch"]["status"],
        "interactive": e2e.summarize(latencies),
    }
