"""The benchmark suite: ``python -m bench`` (see the README's Benchmarks section).

Every row is a ratio to a ceiling or baseline measured in the same run, on this machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import e2e, inprocess
from bench.stack import (
    ROOT,
    env_for,
    free_port,
    fresh_database,
    settings_values,
    start_api,
    start_reconciler,
    start_worker,
)

RESULTS_DIR = ROOT / "bench" / "results"


def _services(values: dict[str, Any]) -> Any:
    from shared import migrate
    from shared.config import Settings
    from shared.services import build_services

    settings = Settings(**{**values, "plugins": [values["plugins"]]})
    migrate.upgrade(settings)
    return build_services(settings)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, run every measure, and return the report."""
    workdir = Path(tempfile.mkdtemp(prefix="aigc-bench-"))
    fresh_database()
    values = settings_values(workdir)
    svc = _services(values)
    from bench.models import register_image_model, register_text_model

    text_model = register_text_model(svc, "bench-text", args.preset)
    image_model = register_image_model(svc, "bench-image")
    port = free_port()
    env = env_for(values, generate_max_batch=64, generate_threads=64)
    procs = [start_api(env, workdir, port), start_reconciler(env, workdir)]
    client = e2e.Client(f"http://127.0.0.1:{port}")
    report: dict[str, Any] = {"machine": inprocess.machine(), "workdir": str(workdir)}
    try:
        worker = start_worker(env, workdir, "generate", "threads", 64)
        procs.append(worker)
        report["text"] = _text(client, text_model, args)
        report["single_request"] = _single(args)
        report["images"] = _images(client, image_model, args)
        report["api"] = _api(client, args)
        procs.append(
            start_worker(
                env_for({}), workdir, "raw", "prefork", 1, app="bench.raw_celery", queues="raw"
            )
        )
        report["round_trip"] = _round_trip(client, args)
        worker.stop()
        naive_env = env_for(values, generate_batching="false")
        procs.append(start_worker(naive_env, workdir, "naive", "prefork", 1))
        report["naive"] = _naive(client, text_model, args)
        procs.append(start_worker(env, workdir, "train", "prefork", 1, queues="train"))
        time.sleep(args.train_warmup_s)  # a long-lived worker has imported Keras already
        report["train"] = _train(client, args)
    finally:
        for proc in procs:
            proc.stop()
        svc.close()
    return report


def _single(args: argparse.Namespace) -> dict[str, float]:
    gen = inprocess.text_generator(args.preset)
    return inprocess.single_latency(gen, args.max_tokens, 16)


def _text(client: e2e.Client, model: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    gen = inprocess.text_generator(args.preset)
    rows = []
    for conc in (1, 8, 64):
        jobs = max(conc * args.rounds, 8)
        # Warm up: load the model and compile this batch size's shapes before timing.
        e2e.text_throughput(client, model, conc, conc, args.max_tokens)
        client_side = e2e.text_throughput(client, model, conc, jobs, args.max_tokens)
        ceiling = inprocess.text_ceiling(gen, conc, args.max_tokens)
        rows.append(
            {
                "concurrency": conc,
                "e2e_tokens_per_s": client_side["tokens_per_s"],
                "ceiling_tokens_per_s": ceiling,
                "batching": client_side["batching"],
            }
        )
        print(
            f"text c={conc}: {client_side['tokens_per_s']:.0f} tok/s, ceiling {ceiling:.0f}",
            flush=True,
        )
    return rows


def _images(client: e2e.Client, model: str, args: argparse.Namespace) -> dict[str, Any]:
    e2e.image_batch(client, model, 64)  # warm the worker's model and shapes
    result = e2e.image_batch(client, model, args.images)
    ceiling = inprocess.image_rates(64, args.images)
    print(f"images: {result['images_per_s']:.0f}/s, ceiling {ceiling}", flush=True)
    return {**result, **ceiling}


def _api(client: e2e.Client, args: argparse.Namespace) -> dict[str, Any]:
    accept = e2e.accept_rate(client, 32, args.api_requests)
    publish = e2e.raw_publish_rate(32, args.api_requests)
    insert = e2e.raw_insert_rate(32, args.api_requests)
    print(f"api: accept {accept}, publish {publish}, insert {insert}", flush=True)
    return {"accept": accept, "raw_publish": publish, "raw_insert": insert}


def _round_trip(client: e2e.Client, args: argparse.Namespace) -> dict[str, Any]:
    time.sleep(2)  # let the queue drain from the accept-rate run
    e2e.raw_round_trips(5)
    e2e.empty_round_trips(client, 5)
    ours = e2e.summarize(e2e.empty_round_trips(client, args.samples))
    raw = e2e.summarize(e2e.raw_round_trips(args.samples))
    print(f"round trip: ours {ours}, raw {raw}", flush=True)
    return {"ours": ours, "raw": raw}


def _naive(client: e2e.Client, model: str, args: argparse.Namespace) -> dict[str, Any]:
    result = e2e.text_throughput(client, model, 64, 64, args.max_tokens, "bench.naive_text")
    print(f"naive c=64: {result['tokens_per_s']:.0f} tok/s", flush=True)
    return {"tokens_per_s": result["tokens_per_s"], "seconds": result["seconds"]}


def _train(client: e2e.Client, args: argparse.Namespace) -> dict[str, Any]:
    params = {"preset": args.preset, "epochs": 1, "max_chars": args.train_chars}
    bare = inprocess.fit_rate(args.preset, args.train_chars)
    job = e2e.train_job(client, params)
    job_rate = bare["tokens"] / job["seconds"]
    print(f"train: job {job_rate:.0f} tok/s, bare fit {bare['tokens_per_s']:.0f}", flush=True)
    return {
        "job_tokens_per_s": job_rate,
        "job_seconds": job["seconds"],
        "job_in_epoch_tokens_per_s": job["progress"].get("tokens_per_s"),
        **bare,
    }


def _ratio(value: float, base: float) -> float:
    return value / base if base else float("nan")


def table(report: dict[str, Any]) -> str:
    """Return the report as a markdown table."""
    m = report["machine"]
    head = (
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, "
        f"Keras {m['keras']} on {m['backend']} (CPU)\n\n"
        "| # | Measure | Value | Compared with (same run) | Ratio | Target |\n"
        "|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in report["text"]:
        ratio = _ratio(r["e2e_tokens_per_s"], r["ceiling_tokens_per_s"])
        target = "≥ 0.8" if r["concurrency"] == 64 else "—"
        rows.append(
            f"| 1 | text tokens/s, submit→terminal, concurrency {r['concurrency']} | "
            f"{r['e2e_tokens_per_s']:.0f} | in-process ceiling, batch "
            f"{r['concurrency']}: {r['ceiling_tokens_per_s']:.0f} | {ratio:.2f} | "
            f"{target} |"
        )
    c64, naive = report["text"][-1]["e2e_tokens_per_s"], report["naive"]["tokens_per_s"]
    rows.append(
        f"| 1 | text tokens/s at concurrency 64 | {c64:.0f} | naive per-token Celery "
        f"path: {naive:.0f} | {_ratio(c64, naive):.1f}× | ≥ 8× |"
    )
    one = report.get("single_request")
    if one:
        rows.append(
            f"| 1 | one lone request, batching on (scheduler) | {one['scheduler_s'] * 1000:.1f} ms "
            f"| batching off (direct compiled call): {one['direct_s'] * 1000:.1f} ms | "
            f"{_ratio(one['scheduler_s'], one['direct_s']):.2f} | ≤ 1 (no worse) |"
        )
    img = report["images"]
    rows.append(
        f"| 2 | images/s, {img['succeeded']}-image bulk batch | "
        f"{img['images_per_s']:.0f} | in-process generator + PNG, batch 64: "
        f"{img['generator_png_images_per_s']:.0f} | "
        f"{_ratio(img['images_per_s'], img['generator_png_images_per_s']):.2f} | ≥ 0.7 |"
    )
    api = report["api"]
    floor = min(api["raw_publish"]["per_s"], api["raw_insert"]["per_s"])
    rows.append(
        f"| 3 | API accept jobs/s, 32 clients (p50 {api['accept']['p50_ms']:.1f} ms, "
        f"p99 {api['accept']['p99_ms']:.1f} ms) | {api['accept']['per_s']:.0f} | "
        f"raw publish {api['raw_publish']['per_s']:.0f}/s, raw INSERT "
        f"{api['raw_insert']['per_s']:.0f}/s | {_ratio(api['accept']['per_s'], floor):.2f}"
        " | ≥ 0.5; p99 < 50 ms |"
    )
    rt = report["round_trip"]
    rows.append(
        f"| 4 | empty job round trip p50 / p99 (ms) | {rt['ours']['p50_ms']:.1f} / "
        f"{rt['ours']['p99_ms']:.1f} | raw Celery task: {rt['raw']['p50_ms']:.1f} / "
        f"{rt['raw']['p99_ms']:.1f} | {_ratio(rt['ours']['p50_ms'], rt['raw']['p50_ms']):.1f}"
        f"× / {_ratio(rt['ours']['p99_ms'], rt['raw']['p99_ms']):.1f}× | ≤ 2× |"
    )
    tr = report["train"]
    rows.append(
        f"| 5 | training tokens/s through `text.train` (claim to success) | "
        f"{tr['job_tokens_per_s']:.0f} | bare `model.fit`: {tr['tokens_per_s']:.0f} | "
        f"{_ratio(tr['job_tokens_per_s'], tr['tokens_per_s']):.2f} | ≥ 0.9 |"
    )
    in_epoch = tr.get("job_in_epoch_tokens_per_s") or float("nan")
    rows.append(
        f"| 5 | training tokens/s inside the job's epoch (its progress) | {in_epoch:.0f} | "
        f"bare `model.fit`: {tr['tokens_per_s']:.0f} | {_ratio(in_epoch, tr['tokens_per_s']):.2f}"
        " | — |"
    )
    rows.append(
        f"| 6 | realized batch sizes; queue wait vs compute | {histogram(report)} | — | — | — |"
    )
    return head + "\n".join(rows) + "\n"


def histogram(report: dict[str, Any]) -> str:
    """Summarize realized batch sizes and queue wait against compute from job results."""
    stats = [b for r in report["text"] for b in r["batching"]]
    if not stats:
        return "no batched jobs"
    sizes = Counter(_bucket(b["mean_batch"]) for b in stats)
    wait = sum(b["queue_wait_s"] for b in stats) / len(stats)
    compute = sum(b["compute_s"] for b in stats) / len(stats)
    hist = ", ".join(f"{k}: {v}" for k, v in sorted(sizes.items(), key=lambda kv: kv[0]))
    return (
        f"mean rows per pass {{{hist}}}; mean wait {wait * 1000:.1f} ms vs compute "
        f"{compute * 1000:.1f} ms"
    )


def _bucket(rows: float) -> str:
    edges = [1, 2, 4, 8, 16, 32, 64]
    upper = next((e for e in edges if rows <= e), 64)
    return f"≤{upper}"


def main() -> None:
    """Run the suite, print the markdown table and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="jobs per client per level")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--api-requests", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--train-chars", type=int, default=200_000)
    parser.add_argument("--train-warmup-s", type=float, default=15.0)
    args = parser.parse_args()
    report = run(args)
    markdown = table(report)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS_DIR / f"bench-{stamp}.json").write_text(json.dumps(report, indent=2, default=str))
    (RESULTS_DIR / "latest.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
