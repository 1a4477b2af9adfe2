"""Rows 18 and 19: what a batch item costs the platform, and a batch of a million items.

Row 18 drains an empty (``bench.noop``) batch and reports the platform's CPU per item by
component (API, worker, PostgreSQL, Redis) and its items/s end to end. Row 19 streams a
1,000,000-item JSONL body to the API as it is generated: its accept time, the API's peak
memory, the completion time, and its results streamed back and checked line by line.
Each runs on a fresh stack. Standalone: ``python -m bench.batch_rows [--items N]
[--jsonl-items N]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cpu, e2e
from bench.context import Bench, client_for, serving_stack
from bench.report import Report, Target
from bench.stack import fresh_database, settings_values

CPU_BUDGET_MS = 0.1  # the platform CPU per batch item
RATE_TARGET = 10_000  # items/s, end to end, on the 2-core machine


class JsonlBody:
    """A JSONL body made as it is sent, so the client never holds it either.

    Item ``i`` is ``c{i}``; its params are empty, or with ``text_bytes`` a text that long.
    """

    def __init__(self, items: int, text_bytes: int = 0) -> None:
        self.items, self.next, self._pending = items, 0, b""
        text = f'"text": "{"x" * text_bytes}"' if text_bytes else ""
        self._params = b"{" + text.encode() + b"}"
        self.size = sum(len(self._line(i)) for i in range(items))

    def _line(self, i: int) -> bytes:
        return b'{"custom_id": "c%d", "params": %s}\n' % (i, self._params)

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        """Return the next ``n`` bytes (``requests`` streams a file-like body this way)."""
        want = self.size if n < 0 else n
        parts, have = [self._pending], len(self._pending)
        while have < want and self.next < self.items:  # whole lines, a few at a time
            line = self._line(self.next)
            parts.append(line)
            have += len(line)
            self.next += 1
        pending = b"".join(parts)
        self._pending = pending[want:]
        return pending[:want]


def _stack(workdir_prefix: str) -> Any:
    workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix))
    fresh_database()
    return serving_stack(workdir, settings_values(workdir))


def empty_batch(items: int) -> dict[str, Any]:
    """Drain one empty batch of ``items`` on a fresh stack; return its rate and CPU per item."""
    with _stack("aigc-bench-noop-") as (svc, stack):
        client = client_for(svc.keys, stack.base_url, "bench")
        e2e.run_batch(client, e2e.NOOP, None, [{}] * 1000)  # warm: imports, pools, keys
        with cpu.Meter(stack.platform()) as meter:
            ran = e2e.run_batch(client, e2e.NOOP, None, [{}] * items)
    return {**ran, "cpu": meter.per_job(items)}


def million(items: int) -> dict[str, Any]:
    """Stream a JSONL batch of ``items`` empty items, wait for it, and read its results back."""
    with _stack("aigc-bench-jsonl-") as (svc, stack):
        client = client_for(svc.keys, stack.base_url, "bench")
        body = JsonlBody(items)
        started = time.perf_counter()
        with cpu.Peak(stack.platform()["api"], cpu.tree_rss_mb, every_s=0.1) as rss:
            resp = client.http.post(
                f"{client.base}/v1/batches?type={e2e.NOOP}",
                data=body,
                headers={"Content-Type": "application/x-ndjson"},
                timeout=1800,
            )
        resp.raise_for_status()
        accepted_s = time.perf_counter() - started
        batch = e2e.wait_batch(client, resp.json()["id"])
        completed_s = time.perf_counter() - started
        lines, in_order = _check_results(client, batch["id"])
        streamed_s = time.perf_counter() - started - completed_s
    return {
        "items": items,
        "body_mb": body.size / 2**20,
        "accepted_s": accepted_s,
        "api_rss_mb": {"before": rss.start, "peak": rss.peak},
        "completed_s": completed_s,
        "status": batch["status"],
        "succeeded": batch["counts"]["succeeded"],
        "result_lines": lines,
        "in_submit_order": in_order,
        "streamed_s": streamed_s,
    }


def _check_results(client: e2e.Client, batch_id: str) -> tuple[int, bool]:
    """Return how many result lines streamed, and whether each was its item, in order."""
    count, in_order = 0, True
    url = f"{client.base}/v1/batches/{batch_id}/results"
    with client.http.get(url, stream=True, timeout=1800) as resp:
        for line in resp.iter_lines():
            if line:
                item = json.loads(line)
                in_order &= item["custom_id"] == f"c{count}" and item["status"] == "succeeded"
                count += 1
    return count, in_order


def report_empty(report: Report, figures: dict[str, Any]) -> None:
    """Add row 18: platform CPU per empty item against the budget, and items/s."""
    n, per_item = figures["items"], figures["cpu"]
    parts = ", ".join(
        f"{k} {per_item.get(k, 0):.3f}" for k in ("api", "worker", "postgres", "redis")
    )
    report.row(
        "18",
        f"empty (bench.noop) batch: platform CPU-ms per item ({parts})",
        f"{per_item[cpu.PLATFORM]:.3f}",
        f"the issue's budget: {CPU_BUDGET_MS} CPU-ms",
        per_item[cpu.PLATFORM] / CPU_BUDGET_MS,
        Target("<=", 1, times=True),
        f"{n:,} items",
    )
    report.row(
        "18",
        "empty batch items/s, submit→completed",
        f"{figures['items_per_s']:,.0f}",
        f"the issue's target: {RATE_TARGET:,}/s",
        figures["items_per_s"] / RATE_TARGET,
        Target(">=", 1),
        f"{n:,} items, accepted in {figures['accept_s']:.1f} s",
    )
    report.cpu_row("18", f"empty {n:,}-item batch (per item)", n, per_item)


def report_million(report: Report, figures: dict[str, Any]) -> None:
    """Add row 19: a million-item JSONL batch, accepted in bounded memory, results in order."""
    n, rss = figures["items"], figures["api_rss_mb"]
    report.row(
        "19",
        f"{n:,}-item JSONL batch ({figures['body_mb']:.0f} MiB streamed): API peak RSS",
        f"{rss['peak']:.0f} MiB",
        f"the API before it: {rss['before']:.0f} MiB",
        rss["peak"] / rss["before"],
        None,
        f"accepted in {figures['accepted_s']:.1f} s",
    )
    report.row(
        "19",
        f"{n:,}-item JSONL batch: completed, and its results streamed in order",
        f"{figures['completed_s']:.0f} s; {figures['result_lines']:,} lines, "
        f"in order: {figures['in_submit_order']}",
        f"accept: {figures['accepted_s']:.1f} s",
        figures["completed_s"] / figures["accepted_s"],
        None,
        f"{figures['succeeded']:,} succeeded; results read in {figures['streamed_s']:.0f} s",
    )


def batches(b: Bench) -> None:
    """Rows 18 and 19, each on a stack of its own (after the main stack is gone)."""
    empty = empty_batch(b.args.noop_items)
    b.report.raw["empty_batch"] = empty
    report_empty(b.report, empty)
    big = million(b.args.jsonl_items)
    b.report.raw["jsonl_batch"] = big
    report_million(b.report, big)


def main() -> None:
    """Run rows 18 and 19 alone and print their table and figures."""
    from bench import inprocess

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--jsonl-items", type=int, default=1_000_000)
    args = parser.parse_args()
    report = Report(inprocess.machine())
    empty = empty_batch(args.items)
    report_empty(report, empty)
    print(json.dumps({k: v for k, v in empty.items() if k != "id"}, indent=2), flush=True)
    if args.jsonl_items:
        big = million(args.jsonl_items)
        report_million(report, big)
        print(json.dumps(big, indent=2), flush=True)
    print(report.markdown())


if __name__ == "__main__":
    main()
