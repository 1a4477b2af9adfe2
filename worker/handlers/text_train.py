"""``text.train``: trains the LSTM language model as a job, with checkpoints and resume."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from shared.errors import InputError, JobCanceled
from shared.jobs.params import TextTrainParams
from shared.models.presets import text_config
from shared.models.tokenizers import Tokenizer
from worker.context import JobContext
from worker.handlers import common

PROGRESS_INTERVAL_S = 1.0


def builtin_corpus() -> str:
    """Return Python's own documentation text, shipped with CPython."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def _corpus(ctx: JobContext, params: TextTrainParams) -> str:
    if params.dataset_id is None:
        text = builtin_corpus()
    else:
        text = ctx.open_dataset(params.dataset_id, "text").read_text("utf-8")
    return text[: params.max_chars]


def train(ctx: JobContext, params: TextTrainParams) -> dict[str, Any]:
    """Train (or resume) a text model, checkpointing every epoch, and register it."""
    import keras

    from worker.ml import text as tm

    keras.utils.clear_session()
    corpus = _corpus(ctx, params)
    model, tokenizer, cfg, start_epoch = _model_for(ctx, params, corpus, tm)
    x, y, xv, yv = tm.make_windows(
        np.asarray(tokenizer.encode(corpus)), cfg.seq_len, params.validation_split
    )
    if len(x) == 0 or len(xv) == 0:
        raise InputError(
            "the text is too short for this seq_len and validation split", field="params.dataset_id"
        )
    windows = _windows_per_epoch(params, len(x), len(corpus))
    tm.train_text(
        model,
        x,
        y,
        xv,
        yv,
        epochs=params.epochs,
        batch_size=cfg.batch_size,
        initial_epoch=start_epoch,
        learning_rate=cfg.learning_rate,
        callbacks=_callbacks(ctx, params, model, cfg, windows or len(x), tokenizer),
        windows_per_epoch=windows,
    )
    if ctx.should_stop():
        raise JobCanceled("canceled")
    result = _finish(ctx, model, tokenizer, cfg, tm.bits_per_token(model, xv, yv), params)
    return {**result, "resumed_from_epoch": start_epoch}


def _windows_per_epoch(params: TextTrainParams, n_windows: int, n_chars: int) -> int | None:
    """Return the training windows of one epoch of epoch_chars, or None for the whole corpus."""
    if params.epoch_chars is None or params.epoch_chars >= n_chars:
        return None
    # In proportion to the corpus, so it holds for word tokens as for characters.
    return max(round(n_windows * params.epoch_chars / n_chars), 1)


def _model_for(ctx: JobContext, params: TextTrainParams, corpus: str, tm: Any) -> tuple:
    import keras

    from worker.ml.persist import sha256_file

    state = common.read_checkpoint_state(ctx)
    if state is not None:
        path = ctx.workdir / "checkpoint.keras"
        if sha256_file(path) == state["sha256"]:
            model = keras.saving.load_model(path)  # safe mode; keeps Adam's state
            cfg = tm.TextConfig(**state["config"])
            return model, Tokenizer.from_json(state["tokenizer"]), cfg, state["epoch"]
    cfg = text_config(params)
    tokenizer = Tokenizer.fit(cfg.tokenizer, corpus, cfg.vocab_size)
    cfg = tm.config_for_tokenizer(cfg, tokenizer)
    model = tm.build_text_model(cfg)
    tm.compile_text_model(model, cfg.learning_rate)
    return model, tokenizer, cfg, 0


def _callbacks(
    ctx: JobContext,
    params: TextTrainParams,
    model: Any,
    cfg: Any,
    n_windows: int,
    tokenizer: Tokenizer,
) -> list:
    from worker.ml.callbacks import CancelCallback, CheckpointCallback, ProgressCallback
    from worker.ml.persist import save_model

    steps = math.ceil(n_windows / cfg.batch_size)
    versions: list[dict[str, Any]] = []  # the interim versions registered so far

    def report(data: dict[str, Any]) -> None:
        done = data.get("epoch", 0) + data.get("step", 0) / steps  # step counts from 1
        fraction = min(done / params.epochs, 1)
        ctx.progress(
            {
                **data,
                "epochs": params.epochs,
                "fraction": fraction,
                "pid": os.getpid(),
                "versions": versions,
            },
            force=bool(data.get("val_loss") is not None),
        )

    def save(epoch: int, logs: dict[str, Any]) -> None:
        if ctx.should_stop():
            return  # a stopped epoch is incomplete: keep the previous checkpoint
        path = ctx.workdir / "checkpoint.keras"
        sha = save_model(model, path)
        common.write_checkpoint_state(
            ctx,
            {
                "epoch": epoch + 1,
                "sha256": sha,
                "config": asdict(cfg),
                "tokenizer": tokenizer.to_json(),
                "saved_at": time.time(),
            },
            [path.name],
        )
        bits = logs.get("val_loss", math.inf) / math.log(2)
        # Only a better model than the last one registered becomes the latest version.
        better = math.isfinite(bits) and (not versions or bits < versions[-1]["bits"])
        if common.version_due(epoch + 1, params) and better:
            registered = _register(ctx, path, tokenizer, cfg, bits, epoch + 1)
            versions.append({**common.version_note(registered), "bits": bits})

    progress = ProgressCallback(report, PROGRESS_INTERVAL_S, steps, cfg.batch_size, cfg.seq_len)
    checkpoint = CheckpointCallback(save)
    # The checkpoint is written before the epoch's progress is reported.
    return [CancelCallback(ctx.should_stop), checkpoint, progress]


def _finish(
    ctx: JobContext,
    model: Any,
    tokenizer: Tokenizer,
    cfg: Any,
    bits: float,
    params: TextTrainParams,
) -> dict[str, Any]:
    from worker.ml.persist import save_model

    final = ctx.workdir / "final.keras"
    save_model(model, final)
    return _register(ctx, final, tokenizer, cfg, bits, params.epochs)


def _register(
    ctx: JobContext, path: Any, tokenizer: Tokenizer, cfg: Any, bits: float, epochs: int
) -> dict[str, Any]:
    """Register the model file at path as the job's model's next version."""
    metric = "bits_per_char" if tokenizer.kind == "char" else "bits_per_token"
    metrics = {
        "val_loss": common.finite(bits * math.log(2)),
        metric: common.finite(bits),
        "epochs": epochs,
        "vocab_size": tokenizer.vocab_size,
    }
    config = {"text": asdict(cfg), "tokenizer": tokenizer.to_json()}
    version = ctx.register_model(path, "text", config, metrics, epochs)
    return {"model": version.ref, "metrics": metrics}
