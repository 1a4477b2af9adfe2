"""Dynamic batching: batched results equal unbatched ones, and requests stay independent."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from shared.errors import JobCanceled

pytestmark = pytest.mark.ml


@pytest.fixture(scope="module")
def generator():
    import keras

    from worker.ml.decode import TextGenerator
    from worker.ml.text import TextConfig, build_text_model

    keras.utils.set_random_seed(7)
    cfg = TextConfig(tokenizer="char", vocab_size=40, embedding_dim=8, units=32, seq_len=16)
    return TextGenerator(build_text_model(cfg))


@pytest.fixture()
def scheduler(generator):
    from worker.scheduler import TextScheduler

    sched = TextScheduler(generator, max_batch=16, chunk_steps=8)
    yield sched
    sched.close()


def _request(seed: int, max_tokens: int, **kw):
    from worker.scheduler import TextRequest

    rng = np.random.default_rng(seed)
    prompt = rng.integers(2, 40, size=int(rng.integers(1, 12))).tolist()
    return TextRequest(
        prompt,
        max_tokens,
        kw.get("temperature", 1.0),
        kw.get("top_k"),
        seed,
        should_stop=kw.get("should_stop", lambda: False),
    )


def test_batched_tokens_match_unbatched_over_many_seeds(generator, scheduler) -> None:
    requests = [
        _request(seed, max_tokens=int(5 + seed * 7 % 40), top_k=None if seed % 3 else 5)
        for seed in range(48)
    ]
    alone = [
        generator.generate([r.ids], [r.max_tokens], [r.temperature], [r.top_k], [r.seed])[0]
        for r in requests
    ]
    # Arrive in waves of different sizes, so rows join and leave mid-flight.
    futures = []
    for start, size in ((0, 1), (1, 7), (8, 16), (24, 3), (27, 21)):
        futures += [scheduler.submit(r) for r in requests[start : start + size]]
        time.sleep(0.01)
    batched = [f.result(timeout=120) for f in futures]
    total = sum(len(a) for a in alone)
    same = sum(
        x == y for a, b in zip(alone, batched, strict=True) for x, y in zip(a, b, strict=False)
    )
    agreement = same / total
    print(f"token agreement batched vs unbatched: {agreement:.5f} over {total} tokens")
    assert [len(b) for b in batched] == [r.max_tokens for r in requests]
    assert agreement >= 0.999, f"agreement {agreement:.5f}"
    assert max(scheduler.stats.rows) > 1, "requests were never batched"


def test_a_long_generation_does_not_hold_back_a_short_one(scheduler) -> None:
    long = scheduler.submit(_request(1, max_tokens=2000))
    short = scheduler.submit(_request(2, max_tokens=5))
    # The short request joins at a chunk boundary and leaves when done, long before the other.
    short.result(timeout=60)
    assert not long.done(), "the short request waited for the long one"
    assert len(long.result(timeout=120)) == 2000


def test_cancel_and_poison_fail_alone(scheduler) -> None:
    from worker.scheduler import TextRequest

    stop = threading.Event()
    canceled = scheduler.submit(_request(3, max_tokens=800, should_stop=stop.is_set))
    fine = scheduler.submit(_request(4, max_tokens=50))
    with pytest.raises(ValueError):
        scheduler.submit(TextRequest([999], 5, 1.0, None, 5))
    stop.set()
    with pytest.raises(JobCanceled):
        canceled.result(timeout=60)
    assert len(fine.result(timeout=60)) == 50


def test_images_are_batched_and_match_unbatched() -> None:
    import keras

    from shared.models.presets import ImageConfig
    from worker.ml.image import build_generator, generate_images
    from worker.scheduler import ImageRequest, ImageScheduler

    keras.utils.set_random_seed(3)
    gen = build_generator(ImageConfig(latent_dim=16, image_size=16, base_filters=16))
    sched = ImageScheduler(gen, max_batch=64, max_wait_s=0.05)
    try:
        futures = [sched.submit(ImageRequest(n, seed)) for n, seed in ((1, 1), (3, 2), (2, 3))]
        results = [f.result(timeout=60) for f in futures]
    finally:
        sched.close()
    for (n, seed), images in zip(((1, 1), (3, 2), (2, 3)), results, strict=True):
        alone = generate_images(gen, n, seed)
        assert images.shape == alone.shape
        assert np.abs(images.astype(int) - alone.astype(int)).max() <= 1
    assert sched.stats.rows[0] == 6
