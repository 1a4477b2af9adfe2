"""Bench-only job types, loaded by workers through ``AIGC_PLUGINS=bench.plugins``."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.accel import AccelParams
from shared.jobs.jobtypes import JobType, register
from shared.jobs.params import Params, TextGenerateParams
from worker.context import JobContext


def noop(ctx: JobContext, params: Params) -> dict[str, Any]:
    """Do nothing: measures the platform's own cost."""
    return {}


def noop_chunk(ctx: JobContext, params: list[Params]) -> list[dict[str, Any]]:
    """Do nothing for a chunk of items: measures the platform's own cost per item."""
    return [{} for _ in params]


def naive_text(ctx: JobContext, params: TextGenerateParams) -> dict[str, Any]:
    """Generate the tutorial's way: one eager model call per token, fed only the last token."""
    with ctx.model("text") as loaded:
        return _naive(loaded, params)


def _naive(loaded: Any, params: TextGenerateParams) -> dict[str, Any]:
    rng = np.random.default_rng(params.seed)
    ids = loaded.tokenizer.encode(params.prompt)
    x = np.asarray([ids], np.int32)
    out = []
    for _ in range(params.max_tokens):
        logits = np.asarray(loaded.model(x), np.float64)[0, -1] / params.temperature
        probs = np.exp(logits - logits.max())
        token = int(rng.choice(len(probs), p=probs / probs.sum()))
        out.append(token)
        x = np.asarray([[token]], np.int32)  # the tutorial's bug: the context is dropped
    return {"completion_tokens": len(out), "text": loaded.tokenizer.decode(out)}


register(
    JobType(
        "bench.noop",
        Params,
        "generate",
        "bench.plugins:noop",
        chunk_handler="bench.plugins:noop_chunk",
    )
)
register(
    JobType(
        "bench.accel",
        AccelParams,
        "generate",
        "bench.accel:accel",
        chunk_handler="bench.accel:accel_chunk",
    )
)
register(
    JobType(
        "bench.naive_text",
        TextGenerateParams,
        "generate",
        "bench.plugins:naive_text",
        model="required",
        model_kind="text",
    )
)
