"""The benchmark suite: ``python -m bench`` (see the README's Benchmarks section).

Every row is a ratio to a ceiling or baseline measured in the same run, on this machine, and
every end-to-end measure also reports CPU-milliseconds per job per component (``bench.cpu``).
Rows 1-11 are numbered as in issue 9, 12-14 are issue 10's (tenants) and 15-16 issue 11's
(streams), 17 issue 20's (a simulated accelerator); rows from earlier issues keep their
targets, marked so.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench import (
    accel_rows,
    batch_rows,
    cpu,
    embedded_rows,
    inprocess,
    load,
    model_rows,
    platform_rows,
    stream_rows,
    tenant_rows,
)
from bench.context import Bench, client_for, migrated_services
from bench.report import Report
from bench.stack import ROOT, Stack, fresh_database, settings_values

RESULTS_DIR = ROOT / "bench" / "results"
BUSY_CORES = 0.2  # more than this busy before the run: something else shares the machine
# Count arguments that --scale shrinks for a quick smoke run.
COUNTS = (
    "rounds",
    "seed_jobs",
    "text_batch",
    "images",
    "api_requests",
    "samples",
    "drain",
    "deep_queue",
    "batch_items",
    "publish_messages",
    "train_chars",
    "naive_jobs",
    "tenant_items",
    "stream_jobs",
    "accel_items",
    "noop_items",
    "jsonl_items",
)


def run(args: argparse.Namespace) -> Report:
    """Start the stack, run every measure, and return the report."""
    from bench.models import register_image_model, register_text_model

    workdir = Path(tempfile.mkdtemp(prefix="aigc-bench-"))
    fresh_database()
    busy = cpu.busy_cores()
    if busy > BUSY_CORES:
        print(f"note: other programs keep {busy:.2f} cores busy; figures will suffer", flush=True)
    values = settings_values(workdir)
    svc = migrated_services(values)
    models = {
        "small": register_text_model(svc.artifacts, svc.registry, "bench-text", "small"),
        "seed": register_text_model(svc.artifacts, svc.registry, "bench-seed", "seed"),
        "image": register_image_model(svc.artifacts, svc.registry, "bench-image"),
    }
    stack = Stack(workdir, values)
    raw = {"workdir": str(workdir), "args": vars(args), "busy_cores_before": busy}
    report = Report(inprocess.machine(), raw=raw)
    b = Bench(args, svc, stack, client_for(svc.keys, stack.base_url, "bench"), report, models)
    try:
        stack.start_api()
        # One request alone first: whatever a fresh API process sets up on its first request
        # (its pools, the key cache) is not raced by the concurrent clients that follow.
        b.client.http.get(f"{stack.base_url}/v1/jobs", params={"limit": 1}).raise_for_status()
        stack.start_reconciler()
        stack.start_worker("train", queues="train", pool="prefork", concurrency=1, env=stack.env())
        stack.quiet()
        # No generate worker yet: nothing consumes the interactive lane while these run.
        platform_rows.publish_path(b)
        platform_rows.accept(b)
        tenant_rows.accept_with_keys(b)
        stack.start_generate()
        load.wait_idle(svc.engine)
        stack.quiet()
        platform_rows.round_trips(b)
        platform_rows.batch_interference(b)
        model_rows.text(b)
        model_rows.text_batch(b)
        model_rows.images(b)
        tenant_rows.fair_shares(b)
        stream_rows.first_text(b)
        stream_rows.readers(b)
        # Last with the generate worker: it pauses and resumes the worker's interactive lane.
        platform_rows.claims(b)
        model_rows.train(b)
        model_rows.naive(b)
    finally:
        stack.close()
        svc.close()
    # After the servers' stack is gone, so that none of its processes shares the cores.
    embedded_rows.interference(b)
    accel_rows.simulated(b)
    batch_rows.batches(b)
    return report


def _scaled(args: argparse.Namespace) -> argparse.Namespace:
    for name in COUNTS:
        setattr(args, name, max(1, round(getattr(args, name) * args.scale)))
    return args


def main() -> None:
    """Run the suite, print the markdown tables and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per `small` job")
    parser.add_argument("--rounds", type=int, default=2, help="`small` jobs per client")
    parser.add_argument("--seed-tokens", type=int, default=256)
    parser.add_argument("--seed-jobs", type=int, default=192, help="`seed` jobs at c=64")
    parser.add_argument("--text-batch", type=int, default=2000, help="items of the text batch")
    parser.add_argument("--images", type=int, default=10_000, help="items of the image batch")
    parser.add_argument("--api-requests", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=500, help="round trips of rows 1-2")
    parser.add_argument("--drain", type=int, default=2000, help="jobs drained in row 7")
    parser.add_argument("--deep-queue", type=int, default=100_000)
    parser.add_argument("--batch-items", type=int, default=20_000, help="row 8's batch")
    parser.add_argument("--publish-messages", type=int, default=5000)
    parser.add_argument("--train-chars", type=int, default=200_000)
    parser.add_argument("--naive-jobs", type=int, default=16)
    parser.add_argument("--tenant-items", type=int, default=2000, help="items per tenant, row 12")
    parser.add_argument("--stream-jobs", type=int, default=256, help="jobs per measure, row 16")
    parser.add_argument("--accel-items", type=int, default=20_000, help="items per batch, row 17")
    parser.add_argument("--noop-items", type=int, default=50_000, help="the empty batch, row 18")
    parser.add_argument("--jsonl-items", type=int, default=1_000_000, help="row 19's batch")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink counts for a smoke run")
    args = _scaled(parser.parse_args())
    started = time.monotonic()
    report = run(args)
    minutes = (time.monotonic() - started) / 60
    report.raw["duration_min"] = round(minutes, 1)
    markdown = f"Run: {time.strftime('%Y-%m-%d')}, {minutes:.1f} min\n\n{report.markdown()}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS_DIR / f"bench-{stamp}.json").write_text(
        json.dumps(report.as_json(), indent=2, default=str)
    )
    (RESULTS_DIR / "latest.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
