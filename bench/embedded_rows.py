"""Row 8 on the embedded defaults: interactive jobs while a batch drains, as ``make run`` serves.

The same measures as row 8 on PostgreSQL and Redis, on a second stack of SQLite and the
filesystem broker (no servers), each against its own baseline measured on that stack: empty
jobs under a ``bench.noop`` batch against idle, and ``small`` text jobs under a text batch
against alone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import e2e, platform_rows
from bench.context import Bench, client_for, migrated_services
from bench.stack import Stack, embedded_values

EMBEDDED = "(embedded: SQLite, filesystem broker)"


def interference(b: Bench) -> None:
    """Row 8 on a stack of SQLite and the filesystem broker."""
    from bench.models import register_text_model

    workdir = Path(tempfile.mkdtemp(prefix="aigc-bench-embedded-"))
    values = embedded_values(workdir)
    svc = migrated_services(values)
    stack = Stack(workdir, values, embedded=True)
    models = {"small": register_text_model(svc.artifacts, svc.registry, "bench-text", "small")}
    e = Bench(b.args, svc, stack, client_for(svc.keys, stack.base_url, "bench"), b.report, models)
    try:
        stack.start_api()
        stack.start_reconciler()
        stack.start_generate()
        stack.quiet()
        _empty_jobs(e)
        _text_jobs(e)
    finally:
        stack.close()
        svc.close()


def _empty_jobs(e: Bench) -> None:
    n = e.args.batch_items
    idle = e2e.summarize(e2e.empty_round_trips(e.client, e.args.samples))
    alone = e2e.run_batch(e.client, e2e.NOOP, None, [{}] * n)
    platform_rows.interference(
        e,
        ("empty-job round trip", f"{n:,}-item bench.noop batch {EMBEDDED}", "idle, same stack"),
        (e2e.NOOP, None, [{}] * n),
        lambda: e2e.empty_round_trips(e.client, 1)[0],
        idle["p50_ms"],
        alone["items_per_s"],
    )


def _text_jobs(e: Bench) -> None:
    n, tokens, model = e.args.text_batch, e.args.max_tokens, e.models["small"]
    params = [e2e.text_params(i, tokens) for i in range(n)]

    def one() -> float:
        return e2e.round_trip(e.client, "text.generate", e2e.text_params(0, tokens), model)[0]

    alone_p50 = e2e.summarize([one() for _ in range(e.args.samples // 10 or 1)])["p50_ms"]
    alone = e2e.run_batch(e.client, "text.generate", model, params)
    platform_rows.interference(
        e,
        (
            f"`small` {tokens}-token text job",
            f"{n:,}-item `small` text batch {EMBEDDED}",
            "alone, same stack",
        ),
        ("text.generate", model, params),
        one,
        alone_p50,
        alone["items_per_s"],
    )
