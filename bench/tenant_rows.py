"""Issue 10's rows: two tenants' shares of the fleet, a third's latency, and what keys cost."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bench import cpu, e2e
from bench.context import Bench
from bench.platform_rows import CLIENTS
from bench.report import Target
from shared.tables import Job

TENANTS = ("bench-tenant-a", "bench-tenant-b")
WINDOWS = 4  # the contended time is cut into this many slices, each reported by its worst share
IDLE_SAMPLES = 20
FAIR = Target(">=", 0.8, note="±20%: the smaller share over the larger")


def accept_with_keys(b: Bench) -> None:
    """Row 14: the API's accept rate with keys checked against the same API with auth off.

    Both APIs run side by side on the same database and Redis, with no worker: the jobs wait
    in the interactive lane for the generate worker that starts later. The two are measured in
    turn, twice each, so a slow patch of the machine hurts both.
    """
    n = b.args.api_requests
    b.stack.start_api("api-open", auth_required=False)
    clients = {"keys": b.client, "open": b.client_for("bench-open", api="api-open")}
    try:
        for client in clients.values():  # warm: every gunicorn worker's imports and pools
            e2e.accept_rate(client, CLIENTS, CLIENTS * 4)
        rates: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        for _ in range(2):
            for name, client in clients.items():
                rates[name].append(e2e.accept_rate(client, CLIENTS, n // 2))
    finally:
        b.stack.stop("api-open")
    per_s = {name: _total_rate(runs) for name, runs in rates.items()}
    b.report.raw["accept_keys"] = rates
    b.report.row(
        "14",
        f"API accept jobs/s with keys (Bearer check, per-key rate limit), {CLIENTS} clients",
        f"{per_s['keys']:.0f}",
        f"the same API with auth off: {per_s['open']:.0f}/s",
        per_s["keys"] / per_s["open"],
        None,
        f"{n:,} each",
    )


def _total_rate(runs: list[dict[str, Any]]) -> float:
    return sum(r["count"] for r in runs) / sum(r["count"] / r["per_s"] for r in runs)


def fair_shares(b: Bench) -> None:
    """Rows 12 and 13: two tenants' text batches side by side; a third tenant's jobs meanwhile."""
    n, tokens, model = b.args.tenant_items, b.args.max_tokens, b.models["small"]
    params = [e2e.text_params(i, tokens) for i in range(n)]
    third = b.client_for("bench-tenant-c")

    def interactive() -> float:
        return e2e.round_trip(third, "text.generate", e2e.text_params(0, tokens), model)[0]

    idle = e2e.summarize([interactive() for _ in range(IDLE_SAMPLES)])
    clients = [b.client_for(t) for t in TENANTS]
    with cpu.Meter(b.platform()) as meter:
        ids = [e2e.submit_batch(c, "text.generate", model, params) for c in clients]
        latencies = _while_draining(clients, ids, interactive)
    busy = e2e.summarize(latencies)
    starts = _starts(b, ids)
    shares = _shares(starts, ids)
    b.report.raw["fair_shares"] = {"idle": idle, "busy": busy, **shares}
    b.report.row(
        "12",
        f"two tenants' `small` text batches side by side: items started while both waited, "
        f"{TENANTS[0]} : {TENANTS[1]}",
        " : ".join(f"{c:,}" for c in shares["counts"]),
        "equal weights: 1 : 1",
        shares["ratio"],
        FAIR,
        f"{n:,} items each",
    )
    b.report.row(
        "12",
        f"the same, worst of {WINDOWS} equal slices of that time",
        " : ".join(f"{c:,}" for c in shares["worst_window"]),
        "equal weights: 1 : 1",
        shares["worst_ratio"],
        FAIR,
        f"{sum(shares['worst_window']):,} items",
    )
    b.report.row(
        "13",
        f"a third tenant's `small` {tokens}-token text job p50 while both drain "
        f"(p99 {busy['p99_ms']:.0f} ms)",
        f"{busy['p50_ms']:.1f} ms",
        f"idle, same job: {idle['p50_ms']:.1f} ms",
        busy["p50_ms"] / idle["p50_ms"],
        Target("<=", 2, times=True),
        f"{busy['samples']} interactive, {2 * n:,} items",
    )
    jobs = 2 * n + busy["samples"]
    b.report.cpu_row(
        "12", "two tenants' text batches + interactive (per job)", jobs, meter.per_job(jobs)
    )


def _while_draining(clients: list[e2e.Client], ids: list[str], interactive: Any) -> list[float]:
    """Run interactive round trips one after another until every batch is terminal."""
    waiters = [
        threading.Thread(target=e2e.wait_batch, args=(c, i), name="batch-waiter")
        for c, i in zip(clients, ids, strict=True)
    ]
    for waiter in waiters:
        waiter.start()
    latencies = []
    while any(w.is_alive() for w in waiters):
        latencies.append(interactive())
    for waiter in waiters:
        waiter.join()
    return latencies


def _starts(b: Bench, ids: list[str]) -> list[tuple[str, datetime]]:
    """Return (batch id, started_at) of every item of the batches (its chunk's), in start order."""
    batches = [uuid.UUID(i) for i in ids]
    with b.svc.store.sessions() as session:
        rows = session.execute(
            select(Job.batch_id, Job.started_at, Job.item_count)
            .where(Job.batch_id.in_(batches), Job.started_at.is_not(None))
            .order_by(Job.started_at)
        ).all()
    return [(str(r.batch_id), r.started_at) for r in rows for _ in range(r.item_count or 1)]


def _shares(starts: list[tuple[str, datetime]], ids: list[str]) -> dict[str, Any]:
    """Count each batch's starts while both had items waiting, overall and per time slice."""
    last = {i: max(t for b, t in starts if b == i) for i in ids}
    first = starts[0][1]
    until = min(last.values())  # past this, one tenant had nothing left to wait
    span = (until - first) / WINDOWS
    contended = [(b, t) for b, t in starts if t <= until]
    counts = [sum(b == i for b, _ in contended) for i in ids]
    windows = []
    for w in range(WINDOWS):
        lo, hi = first + span * w, first + span * (w + 1)
        windows.append([sum(b == i and lo <= t <= hi for b, t in contended) for i in ids])
    worst = min(windows, key=_ratio)
    return {
        "counts": counts,
        "ratio": _ratio(counts),
        "windows": windows,
        "worst_window": worst,
        "worst_ratio": _ratio(worst),
        "contended_s": (until - first).total_seconds(),
    }


def _ratio(counts: list[int]) -> float:
    return min(counts) / max(counts) if max(counts) else float("nan")
