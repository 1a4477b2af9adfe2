"""``image.train``: trains the DCGAN as a job, one checkpoint and sample grid per epoch."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np

from shared.errors import InputError, JobCanceled
from shared.jobs.params import ImageTrainParams
from shared.models.presets import image_config
from worker.context import JobContext
from worker.handlers import common

GRID_SAMPLES = 16
GRID_SEED = 0  # the same latents every epoch, so the grids show training progress


def _training_images(ctx: JobContext, params: ImageTrainParams, cfg: Any) -> np.ndarray:
    from PIL import Image

    from worker.ml.image import load_digits_dataset

    if params.dataset_id is None:
        return load_digits_dataset(cfg)[: params.max_images]
    with np.load(ctx.open_dataset(params.dataset_id, "image"), allow_pickle=False) as f:
        stored = f["images"][: params.max_images]
    size = (cfg.image_size, cfg.image_size)
    mode = "L" if cfg.channels == 1 else "RGB"
    out = [
        np.asarray(
            Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img)
            .convert(mode)
            .resize(size, Image.Resampling.BILINEAR)
        )
        for img in stored
    ]
    arr = np.stack(out).astype(np.float32) / 127.5 - 1.0
    return arr[..., None] if arr.ndim == 3 else arr


def train(ctx: JobContext, params: ImageTrainParams) -> dict[str, Any]:
    """Train (or resume) the DCGAN, one checkpoint and sample grid per epoch, then register it."""
    import keras

    keras.utils.clear_session()
    cfg = image_config(params)
    images = _training_images(ctx, params, cfg)
    if len(images) < 2:
        raise InputError("the dataset needs at least 2 images", field="params.dataset_id")
    gan, start = _gan_for(ctx, cfg)
    losses: dict[str, Any] = {}
    history: list[dict[str, Any]] = []  # one entry per epoch, for the training curves
    versions: list[dict[str, Any]] = []  # the interim versions registered so far
    for epoch in range(start, params.epochs):
        losses = _run_epoch(ctx, gan, images, params, epoch, history)
        if ctx.should_stop():
            raise JobCanceled("canceled")
        _checkpoint(ctx, gan, cfg, epoch + 1)
        history.append({"epoch": epoch + 1, **losses})
        if common.version_due(epoch + 1, params):
            interim = _register(ctx, gan, cfg, losses, epoch + 1, "interim.keras")
            versions.append(common.version_note(interim))
        ctx.progress(
            {
                "epoch": epoch + 1,
                "epochs": params.epochs,
                **losses,
                "grid": _sample_grid(ctx, gan),
                "fraction": (epoch + 1) / params.epochs,
                "history": history,
                "versions": versions,
            },
            force=True,
        )
    final = _register(ctx, gan, cfg, losses, params.epochs, "final.keras")
    return {**final, "resumed_from_epoch": start}


def _run_epoch(
    ctx: JobContext,
    gan: Any,
    images: np.ndarray,
    params: ImageTrainParams,
    epoch: int,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    steps = max(len(images) // min(params.batch_size, len(images)), 1)
    started = time.monotonic()

    def on_batch(step: int, d_loss: float, g_loss: float) -> None:
        done = (step + 1) / steps
        rate = (step + 1) * params.batch_size / max(time.monotonic() - started, 1e-9)
        ctx.progress(
            {
                "epoch": epoch,
                "epochs": params.epochs,
                "step": step,
                "steps_per_epoch": steps,
                "d_loss": d_loss,
                "g_loss": g_loss,
                "images_per_s": rate,
                "fraction": (epoch + done) / params.epochs,
                "eta_s": (params.epochs - epoch - done) * steps * params.batch_size / rate,
                "history": history,
            }
        )

    result = gan.train_epoch(
        images, params.batch_size, rng_seed=epoch, should_stop=ctx.should_stop, on_batch=on_batch
    )
    return {"d_loss": common.finite(result["d_loss"]), "g_loss": common.finite(result["g_loss"])}


def _gan_for(ctx: JobContext, cfg: Any) -> tuple[Any, int]:
    from worker.ml.image import DCGAN
    from worker.ml.persist import load_model_verified

    state = common.read_checkpoint_state(ctx)
    if state is None:
        return DCGAN(cfg), 0
    # Weights resume exactly; the two Adam optimizers restart (train_on_batch models).
    gen = load_model_verified(ctx.workdir / "generator.keras", state["generator_sha256"])
    disc = load_model_verified(ctx.workdir / "discriminator.keras", state["discriminator_sha256"])
    return DCGAN(cfg, gen, disc), state["epoch"]


def _checkpoint(ctx: JobContext, gan: Any, cfg: Any, epochs_done: int) -> None:
    from worker.ml.persist import save_model

    gen_sha = save_model(gan.generator, ctx.workdir / "generator.keras")
    disc_sha = save_model(gan.discriminator, ctx.workdir / "discriminator.keras")
    common.write_checkpoint_state(
        ctx,
        {
            "epoch": epochs_done,
            "generator_sha256": gen_sha,
            "discriminator_sha256": disc_sha,
            "config": asdict(cfg),
        },
        ["generator.keras", "discriminator.keras"],
    )


def _sample_grid(ctx: JobContext, gan: Any) -> dict[str, Any]:
    from worker.ml.image import encode_png, generate_images, image_grid

    grid = image_grid(generate_images(gan.generator, GRID_SAMPLES, GRID_SEED), cols=4)
    return ctx.save_artifact("sample_grid", "image/png", encode_png(grid), ".png")


def _register(
    ctx: JobContext, gan: Any, cfg: Any, losses: dict[str, Any], epochs: int, filename: str
) -> dict[str, Any]:
    """Save the generator and register it as the job's model's next version."""
    from worker.ml.persist import save_model

    path = ctx.workdir / filename
    save_model(gan.generator, path)
    metrics = {**losses, "epochs": epochs}
    version = ctx.register_model(path, "image", {"image": asdict(cfg)}, metrics, epochs)
    return {"model": version.ref, "metrics": metrics}
