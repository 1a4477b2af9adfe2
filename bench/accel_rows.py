"""Row 17: can the platform feed a GPU? A batch on a simulated H200 (``bench.accel``).

Each measure runs on a fresh stack whose chunk (one message, one claim, one pass) holds the
model batch being measured. It reports the items/s achieved against the simulated device's own
rate at that batch, the device's duty cycle (the share of the drain's wall time spent inside
passes, read off the items' results) and the platform's CPU per item by component.
Standalone: ``python -m bench.accel_rows [--items N] [--batches 64,1024]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench import cpu, e2e
from bench.accel import ITEM_TOKENS, pass_seconds
from bench.context import Bench, client_for, serving_stack
from bench.report import Report, Target
from bench.stack import fresh_database, settings_values

ACCEL = "bench.accel"
BATCHES = (64, 1024)  # the model batches: a target at 64, the figure at 1,024
DUTY_TARGET = 0.5  # at batch 64


def measure(rows: int, items: int) -> dict[str, Any]:
    """Drain ``items`` simulated items in chunks of ``rows`` on a fresh stack; return figures."""
    workdir = Path(tempfile.mkdtemp(prefix=f"aigc-bench-accel{rows}-"))
    fresh_database()
    values = {**settings_values(workdir), "batch_chunk_size": rows}
    with serving_stack(workdir, values) as (svc, stack):
        client = client_for(svc.keys, stack.base_url, "bench")
        e2e.run_batch(client, ACCEL, None, [{}] * rows)  # warm: first imports, pools, keys
        with cpu.Meter(stack.platform()) as meter:
            ran = e2e.run_batch(client, ACCEL, None, [{}] * items)
        results = e2e.batch_results(client, ran["id"])
    return {"rows": rows, **ran, **duty(results), "cpu": meter.per_job(items)}


def duty(results: list[dict[str, Any]]) -> dict[str, float]:
    """Return the device's busy share and items/s over the drain, from the items' pass times."""
    passes = {(r["pass_start"], r["pass_end"]): r["pass_rows"] for r in results}
    first = min(start for start, _ in passes)
    last = max(end for _, end in passes)
    busy = sum(end - start for start, end in passes)
    return {
        "passes": len(passes),
        "mean_rows": sum(passes.values()) / len(passes),
        "drain_s": last - first,
        "duty_cycle": busy / (last - first),
        "drain_items_per_s": len(results) / (last - first),
    }


def report_rows(report: Report, figures: dict[str, Any]) -> None:
    """Add row 17 for one model batch: achieved items/s against the device's, and the duty."""
    rows, items = figures["rows"], figures["items"]
    device = rows / pass_seconds(rows, ITEM_TOKENS)
    report.row(
        "17",
        f"simulated H200 (`small`, {ITEM_TOKENS} tokens an item), model batch {rows:,}: "
        "items/s achieved, submit→completed",
        f"{figures['items_per_s']:,.0f} (drain alone {figures['drain_items_per_s']:,.0f})",
        f"the device's own rate at batch {rows:,}: {device:,.0f}/s",
        figures["items_per_s"] / device,
        None,
        f"{items:,} items, {figures['passes']:,} passes of {figures['mean_rows']:.0f} rows",
    )
    report.row(
        "17",
        f"simulated H200, model batch {rows:,}: device duty cycle over the drain",
        f"{figures['duty_cycle']:.3f}",
        "a device never idle: 1",
        figures["duty_cycle"],
        Target(">=", DUTY_TARGET) if rows == BATCHES[0] else None,
        f"{figures['drain_s']:.1f} s drain",
    )
    report.cpu_row("17", f"bench.accel batch, chunks of {rows:,} (per item)", items, figures["cpu"])


def simulated(b: Bench) -> None:
    """Row 17 at each model batch, each on a stack of its own (after the main stack is gone)."""
    for rows in BATCHES:
        figures = measure(rows, b.args.accel_items)
        b.report.raw.setdefault("accel", []).append(figures)
        report_rows(b.report, figures)


def main() -> None:
    """Run row 17 alone and print its table and figures."""
    from bench import inprocess

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    args = parser.parse_args()
    report = Report(inprocess.machine())
    for rows in (int(r) for r in args.batches.split(",")):
        figures = measure(rows, args.items)
        report_rows(report, figures)
        print(json.dumps({k: v for k, v in figures.items() if k != "id"}, indent=2), flush=True)
    print(report.markdown())


if __name__ == "__main__":
    main()
