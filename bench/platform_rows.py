"""The platform's rows: its own cost per job (CPU and latency) against bare baselines."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from bench import cpu, e2e, load, publishing
from bench.context import Bench
from bench.report import Target
from bench.stack import env_for

CLIENTS = 32  # concurrent clients of the accept-rate rows
IDLE_S = 5  # how long the idle stack's own CPU use is measured


def publish_path(b: Bench) -> None:
    """Row 10: CPU per message of the lean publisher against kombu's send_task."""
    res = publishing.publish_cpu(b.svc.publisher, b.stack.servers["redis"], b.args.publish_messages)
    lean, kombu = res["lean"], res["kombu"]
    b.report.raw["publish"] = res

    def cost(r: dict[str, Any]) -> float:
        return r["cpu"][cpu.CLIENT] + r["cpu"]["redis"]

    b.report.row(
        "10",
        "publish CPU per message (publisher's process + Redis), lean publisher: wire envelope "
        "+ LPUSH",
        f"{cost(lean) * 1000:.0f} µs",
        f"kombu `send_task`, same Celery app and Redis: {cost(kombu) * 1000:.0f} µs",
        cost(lean) / cost(kombu),
        None,
        f"{lean['messages']:,} messages each",
    )
    b.report.cpu_row("10", "publish: lean publisher (per message)", lean["messages"], lean["cpu"])
    b.report.cpu_row(
        "10", "publish: kombu send_task (per message)", kombu["messages"], kombu["cpu"]
    )


def accept(b: Bench) -> None:
    """Row 6: the API's accept rate and p99 at 32 clients against a raw Celery publish."""
    n = b.args.api_requests
    e2e.accept_rate(b.client, CLIENTS, CLIENTS * 4)  # every API worker's imports and pools
    with cpu.Meter(b.stack.roots("postgres", "redis", api="api", reconciler="reconciler")) as ours:
        accept = e2e.accept_rate(b.client, CLIENTS, n)
    e2e.raw_publish_rate(CLIENTS, CLIENTS * 4)
    with cpu.Meter(b.stack.roots("redis")) as bare:
        publish = e2e.raw_publish_rate(CLIENTS, n)
    with cpu.Meter(b.stack.roots("postgres")) as sql:
        insert = e2e.raw_insert_rate(CLIENTS, n)
    b.report.raw["accept"] = {"ours": accept, "raw_publish": publish, "raw_insert": insert}
    b.report.row(
        "6",
        f"API accept jobs/s, {CLIENTS} clients (POST /v1/jobs, bench.noop)",
        f"{accept['per_s']:.0f}",
        f"raw Celery publish: {publish['per_s']:.0f}/s (raw INSERT: {insert['per_s']:.0f}/s)",
        accept["per_s"] / publish["per_s"],
        Target(">=", 0.5),
        f"{n:,} each",
    )
    b.report.row(
        "6",
        f"API accept p99 latency, {CLIENTS} clients",
        f"{accept['p99_ms']:.1f} ms (p50 {accept['p50_ms']:.1f})",
        f"raw publish p99: {publish['p99_ms']:.1f} ms (p50 {publish['p50_ms']:.1f})",
        accept["p99_ms"] / publish["p99_ms"],
        Target("<=", 2, times=True),
        f"{n:,} each",
    )
    b.report.cpu_row("6", "accept path: POST /v1/jobs (no worker)", n, ours.per_job(n))
    b.report.cpu_row("6", "raw Celery publish (send_task)", n, bare.per_job(n))
    b.report.cpu_row("6", "raw single-row INSERT", n, sql.per_job(n))


def round_trips(b: Bench) -> None:
    """Rows 1 and 2: an empty job's round trip, CPU and latency, against a bare Celery task."""
    from bench.raw_celery import QUEUE

    b.stack.start_worker(
        "raw",
        queues="generate",
        pool="prefork",
        concurrency=1,
        env=env_for({}),
        app="bench.raw_celery",
        queue=QUEUE,
    )
    b.stack.quiet()
    e2e.raw_round_trips(20)
    e2e.empty_round_trips(b.client, 20)
    with cpu.Meter(b.platform()) as idle_cpu:
        time.sleep(IDLE_S)
    b.report.cpu_row(
        "1", "idle stack, per second (Jobs: seconds)", IDLE_S, idle_cpu.per_job(IDLE_S)
    )
    n = b.args.samples
    with cpu.Meter(b.platform()) as ours_cpu:
        ours = e2e.summarize(e2e.empty_round_trips(b.client, n))
    with cpu.Meter(b.stack.roots("redis", worker="raw")) as raw_cpu:
        raw = e2e.summarize(e2e.raw_round_trips(n))
    b.stack.stop("raw")
    b.report.raw["round_trip"] = {"ours": ours, "raw": raw}
    o, r = ours_cpu.per_job(n), raw_cpu.per_job(n)
    b.report.row(
        "1",
        "platform CPU per empty job round trip (submit, run, long poll sees it): API + worker "
        "+ reconciler + PostgreSQL + Redis",
        f"{o[cpu.PLATFORM]:.2f} ms",
        f"bare Celery task (send_task + result.get): its worker + Redis: {r[cpu.PLATFORM]:.2f} ms",
        o[cpu.PLATFORM] / r[cpu.PLATFORM],
        Target("<=", 2, times=True),
        f"{n} each",
    )
    for q in ("p50", "p99"):
        b.report.row(
            "2",
            f"empty job round trip {q}",
            f"{ours[q + '_ms']:.1f} ms",
            f"bare Celery task {q}: {raw[q + '_ms']:.1f} ms",
            ours[q + "_ms"] / raw[q + "_ms"],
            Target("<=", 2, times=True),
            f"{n} each",
        )
    b.report.cpu_row("1", "empty job round trip (ours)", n, o)
    b.report.cpu_row("1", "bare Celery task round trip", n, r)


def batch_interference(b: Bench) -> None:
    """Row 8: empty interactive jobs while a bench.noop batch drains, against idle."""
    n = b.args.batch_items
    batch = (e2e.NOOP, None, [{}] * n)
    with cpu.Meter(b.platform()) as meter:
        alone = e2e.run_batch(b.client, *batch)
    b.report.cpu_row("8", "bench.noop batch alone (per item)", n, meter.per_job(n))
    load.wait_idle(b.svc.engine)
    idle = b.report.raw["round_trip"]["ours"]
    interference(
        b,
        ("empty-job round trip", f"{n:,}-item bench.noop batch", "idle (row 2)"),
        batch,
        lambda: e2e.empty_round_trips(b.client, 1)[0],
        idle["p50_ms"],
        alone["items_per_s"],
    )


def interference(
    b: Bench,
    labels: tuple[str, str, str],
    batch: tuple[str, str | None, list[dict[str, Any]]],
    interactive: Callable[[], float],
    idle_p50_ms: float,
    alone_per_s: float,
) -> None:
    """Row 8: time ``interactive`` round trips while ``batch`` drains, against idle and alone.

    ``labels`` name the interactive job, the batch and the idle baseline.
    """
    what, which, idle = labels
    with cpu.Meter(b.platform()) as meter:
        mixed = load.under_batch(b.client, batch, interactive)
    b.report.raw.setdefault("interference", []).append({"batch": which, **mixed})
    busy, n = mixed["interactive"], mixed["items"]
    b.report.row(
        "8",
        f"interactive {what} p50 while a {which} drains (p99 {busy['p99_ms']:.0f} ms)",
        f"{busy['p50_ms']:.1f} ms",
        f"{idle}: {idle_p50_ms:.1f} ms",
        busy["p50_ms"] / idle_p50_ms,
        Target("<=", 2, times=True),
        f"{busy['samples']} interactive, {n:,} items",
    )
    b.report.row(
        "8",
        f"that {which}'s items/s, submit→completed, with the interactive traffic",
        f"{mixed['items_per_s']:.0f}",
        f"the same batch alone: {alone_per_s:.0f}",
        mixed["items_per_s"] / alone_per_s,
        None,
        f"{n:,} items each",
    )
    jobs = n + busy["samples"]
    b.report.cpu_row("8", f"{which} + interactive jobs (per job)", jobs, meter.per_job(jobs))


def claims(b: Bench) -> None:
    """Row 7: CPU per claimed job with 100,000 other jobs queued against 100."""
    shallow, deep, n = 100, b.args.deep_queue, b.args.drain
    node = f"gen@{socket.gethostname()}"
    measured = []
    for queued in (shallow, deep):
        ids = load.hold(b.svc.celery, b.client, node, n)
        load.add_filler(b.svc.engine, ids[0], queued)
        b.stack.quiet()
        measured.append(load.drain(b.svc.celery, b.svc.engine, node, b.platform(), ids))
        load.remove_filler(b.svc.engine)
    few, many = measured
    b.report.raw["claims"] = {"shallow": few, "deep": many}
    for comp, label in (("postgres", "PostgreSQL"), ("worker", "worker")):
        b.report.row(
            "7",
            f"{label} CPU-ms per claimed bench.noop job, {deep:,} other jobs queued "
            "(not due, unpublished)",
            f"{many['cpu'][comp]:.3f}",
            f"{shallow} queued: {few['cpu'][comp]:.3f}",
            many["cpu"][comp] / few["cpu"][comp],
            Target("<=", 1.5, times=True),
            f"{n:,} drained each",
        )
    b.report.cpu_row("7", f"drain, {shallow} other jobs queued", n, few["cpu"])
    b.report.cpu_row("7", f"drain, {deep:,} other jobs queued", n, many["cpu"])
