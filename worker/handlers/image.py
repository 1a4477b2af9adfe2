"""``image.generate``: samples the DCGAN generator, alone or as a chunk of batch items."""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.jobs.params import ImageGenerateParams
from worker import metrics
from worker.context import JobContext
from worker.handlers import common


def generate(ctx: JobContext, params: ImageGenerateParams) -> dict[str, Any]:
    """Generate ``n`` images from the seed and store each as a PNG artifact."""
    from worker.ml.image import generate_images

    with ctx.model("image") as loaded:
        if not ctx.settings.generate_batching:
            images = generate_images(loaded.model, params.n, params.seed)
            return _store(ctx, params, images, loaded.resolved.ref, None)
        request = _request(ctx, params)
        future = loaded.batcher(ctx.settings).submit(request)
        images = common.wait_for_future(ctx, future, lambda: {"fraction": 0.0})
        return _store(ctx, params, images, loaded.resolved.ref, request.timing.summary())


def generate_chunk(
    ctx: JobContext, params: list[ImageGenerateParams]
) -> list[dict[str, Any] | BaseException]:
    """Generate a chunk of batch items: every request reaches the scheduler at once."""
    with ctx.model("image") as loaded:
        if not ctx.settings.generate_batching:
            return common.one_by_one(generate, ctx, params)
        batcher = loaded.batcher(ctx.settings)
        requests = [_request(ctx, p) for p in params]
        futures = [common.attempt(lambda r=r: batcher.submit(r)) for r in requests]
        return [
            future
            if isinstance(future, BaseException)
            else common.attempt(
                lambda p=p, r=r, f=future: _store(
                    ctx, p, common.wait_for_future(ctx, f), loaded.resolved.ref, r.timing.summary()
                )
            )
            for p, r, future in zip(params, requests, futures, strict=True)
        ]


def _request(ctx: JobContext, params: ImageGenerateParams) -> Any:
    from worker.scheduler import ImageRequest

    return ImageRequest(
        params.n, params.seed, should_stop=ctx.should_stop, bulk=ctx.job.batch_id is not None
    )


def _store(
    ctx: JobContext,
    params: ImageGenerateParams,
    images: np.ndarray,
    ref: str,
    batching: dict[str, float] | None,
) -> dict[str, Any]:
    """Store each image as a PNG artifact, recorded with the job's success."""
    from worker.ml.image import encode_png

    ctx.check()
    metrics.IMAGES.inc(len(images))
    stored = [
        ctx.save_artifact("image", "image/png", encode_png(img), ".png", defer=True)
        for img in images
    ]
    height, width, channels = images.shape[1:]
    return {
        "images": stored,
        "n": params.n,
        "width": int(width),
        "height": int(height),
        "channels": int(channels),
        "model": ref,
        "batching": batching,
    }
