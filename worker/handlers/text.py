"""``text.generate``: continues prompts with the LSTM language model, alone or as a chunk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.errors import InputError
from shared.jobs.params import TextGenerateParams
from worker import metrics
from worker.context import JobContext
from worker.handlers import common

DECODE_CHUNK_STEPS = 64  # steps per compiled call; cancel is checked between calls


def generate(ctx: JobContext, params: TextGenerateParams) -> dict[str, Any]:
    """Continue a prompt with stateful decoding: batched with other jobs, or alone."""
    with ctx.model("text") as loaded:
        ids = _prompt_ids(loaded, params)

        def stream(tokens: list[int]) -> None:  # on the owner thread: a put on a queue
            ctx.stream_text(tokens, loaded.tokenizer.decode)

        if not ctx.settings.generate_batching:
            tokens = _generate_alone(ctx, loaded.generator, ids, params, stream)
            ctx.stream_text(tokens, loaded.tokenizer.decode, last=True)
            return _result(loaded, params, ids, tokens)
        done = [0]
        request = _request(
            ctx, ids, params, on_progress=lambda n: done.__setitem__(0, n), on_tokens=stream
        )
        future = loaded.batcher(ctx.settings).submit(request)
        try:
            tokens = common.wait_for_future(ctx, future, lambda: _progress(done[0], params))
        except BaseException:
            ctx.stream_text([], loaded.tokenizer.decode, last=True)  # the publisher forgets it
            raise
        ctx.stream_text(tokens, loaded.tokenizer.decode, last=True)
        return _result(loaded, params, ids, tokens, request.timing.summary())


def _progress(done: int, params: TextGenerateParams) -> dict[str, Any]:
    return {"completion_tokens": done, "fraction": done / params.max_tokens}


def generate_chunk(
    ctx: JobContext, params: list[TextGenerateParams]
) -> list[dict[str, Any] | BaseException]:
    """Generate a chunk of batch items: one thread hands every request to the scheduler at once.

    The chunk writes no progress (its batch's counts are its progress); a bad item fails alone.
    """
    with ctx.model("text") as loaded:
        if not ctx.settings.generate_batching:
            return common.one_by_one(generate, ctx, params)
        batcher = loaded.batcher(ctx.settings)
        submitted = [common.attempt(lambda p=p: _submit(batcher, loaded, ctx, p)) for p in params]
        results = [
            sent
            if isinstance(sent, BaseException)
            else common.attempt(lambda p=p, s=sent: _collect(loaded, ctx, p, s))
            for p, sent in zip(params, submitted, strict=True)
        ]
    metrics.TOKENS.inc(sum(r["completion_tokens"] for r in results if isinstance(r, dict)))
    return results


def _submit(batcher: Any, loaded: Any, ctx: JobContext, params: TextGenerateParams) -> tuple:
    ids = _prompt_ids(loaded, params)
    request = _request(ctx, ids, params)
    return ids, request, batcher.submit(request)


def _collect(
    loaded: Any, ctx: JobContext, params: TextGenerateParams, sent: tuple
) -> dict[str, Any]:
    ids, request, future = sent
    tokens = common.wait_for_future(ctx, future)
    return _result(loaded, params, ids, tokens, request.timing.summary(), count=False)


def _prompt_ids(loaded: Any, params: TextGenerateParams) -> list[int]:
    ids = loaded.tokenizer.encode(params.prompt)
    if not ids:
        raise InputError("the prompt has no tokens for this model", field="params.prompt")
    return ids


def _request(ctx: JobContext, ids: list[int], params: TextGenerateParams, **extra: Any) -> Any:
    from worker.scheduler import TextRequest

    return TextRequest(
        ids,
        params.max_tokens,
        params.temperature,
        params.top_k,
        params.seed,
        should_stop=ctx.should_stop,
        bulk=ctx.job.batch_id is not None,
        **extra,
    )


def _result(
    loaded: Any,
    params: TextGenerateParams,
    ids: list[int],
    tokens: list[int],
    batching: dict[str, float] | None = None,
    *,
    count: bool = True,
) -> dict[str, Any]:
    """Return a generation's result; ``count`` its tokens (a chunk counts them once, in all)."""
    if count:
        metrics.TOKENS.inc(len(tokens))
    return {
        "text": loaded.tokenizer.decode(tokens),
        "prompt": params.prompt,
        "prompt_tokens": len(ids),
        "completion_tokens": len(tokens),
        "model": loaded.resolved.ref,
        "batching": batching,
    }


def _generate_alone(
    ctx: JobContext,
    gen: Any,
    ids: list[int],
    params: TextGenerateParams,
    stream: Callable[[list[int]], None],
) -> list[int]:
    state = gen.init_state(
        [ids], [params.max_tokens], [params.temperature], [params.top_k], [params.seed]
    )
    while not gen.finished_rows(state):
        ctx.check()
        state = gen.decode_chunk(state, DECODE_CHUNK_STEPS)
        done = int(state.arrays["n_gen"][0])
        ctx.progress(_progress(done, params))
        stream(gen.row_tokens(state, 0))
    return gen.row_tokens(state, 0)
