"""Dynamic batching: batched results equal unbatched ones, requests stay independent, and
interactive requests take slots back from batch rows, which resume losing nothing."""

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
        bulk=kw.get("bulk", False),
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


class _PassLog:
    """The real generator, noting on the owner thread which requests each decode pass carries."""

    def __init__(self, generator, names: dict[int, str]) -> None:
        self._generator = generator
        self.names = names  # id(request) -> a name for the log
        self.scheduler = None
        self.passes: list[list[str]] = []
        self.on_pass = lambda rows: None  # called as a pass starts, before it runs

    def __getattr__(self, name: str):
        return getattr(self._generator, name)

    def decode_chunk(self, state, n_steps: int):
        rows = sorted(self.names[id(req)] for req in self.scheduler.active.values())
        self.passes.append(rows)
        self.on_pass(rows)
        return self._generator.decode_chunk(state, n_steps)


def _logged_scheduler(generator, requests: dict, max_batch: int) -> _PassLog:
    """Return a new scheduler's pass log, naming ``requests`` by their keys."""
    from worker.scheduler import TextScheduler

    log = _PassLog(generator, {id(req): name for name, req in requests.items()})
    log.scheduler = TextScheduler(log, max_batch=max_batch, chunk_steps=8)
    return log


def _arrive_when_full(log: _PassLog, full: dict, newcomers: dict) -> list[int]:
    """Submit ``newcomers`` during the first pass carrying exactly ``full``; note the next one."""
    arrival: list[int] = []

    def arrive(rows: list[str]) -> None:
        # Submitted while that pass runs, so which pass is "the next one" is well defined.
        if rows == sorted(full) and not arrival:
            arrival.append(len(log.passes))
            for req in newcomers.values():
                log.scheduler.submit(req)

    log.on_pass = arrive
    return arrival


def _batch_rows() -> dict:
    # Longer than a lone pass (LONE_CHUNK_STEPS), so the first row is still there when the
    # others join it, and every slot is held by a batch row.
    return {f"b{i}": _request(10 + i, max_tokens=400, bulk=True) for i in range(4)}


@pytest.mark.parametrize("apps", [1, 2])
def test_interactive_requests_take_batch_slots_in_the_very_next_pass(generator, apps) -> None:
    batch = _batch_rows()
    interactive = {f"app{i}": _request(20 + i, max_tokens=30) for i in range(apps)}
    log = _logged_scheduler(generator, {**batch, **interactive}, max_batch=4)
    sched = log.scheduler
    arrival = _arrive_when_full(log, batch, interactive)
    try:
        futures = {name: sched.submit(req) for name, req in batch.items()}
        tokens = {name: f.result(timeout=120) for name, f in futures.items()}
        for req in interactive.values():
            req.future.result(timeout=120)
    finally:
        sched.close()

    passes, first = log.passes, arrival[0]
    assert set(interactive) <= set(passes[first]), f"pass after arrival: {passes[first]}"
    assert len(passes[first]) == 4
    assert max(len(rows) for rows in passes) == 4
    parked = set(batch) - set(passes[first])
    assert len(parked) == apps and sched.stats.parked == apps
    # The parked rows wait exactly while the interactive ones run, then resume at once.
    serving = [i for i, rows in enumerate(passes) if set(interactive) & set(rows)]
    assert serving == list(range(first, serving[-1] + 1))
    assert all(not parked & set(passes[i]) for i in serving)
    assert parked <= set(passes[serving[-1] + 1]), passes[serving[-1] + 1]
    # Same seed, same tokens: parking loses nothing of a row's state.
    assert tokens == _unpreempted(generator)


def _unpreempted(generator) -> dict[str, list[int]]:
    batch = _batch_rows()
    sched = _logged_scheduler(generator, batch, max_batch=4).scheduler
    try:
        futures = {name: sched.submit(req) for name, req in batch.items()}
        tokens = {name: f.result(timeout=120) for name, f in futures.items()}
    finally:
        sched.close()
    assert sched.stats.parked == 0
    return tokens


def test_a_parked_row_resumes_exactly_where_it_stopped(generator) -> None:
    req = _request(5, max_tokens=60, top_k=5)
    args = [req.ids], [req.max_tokens], [req.temperature], [req.top_k], [req.seed]
    whole = generator.generate(*args)[0]
    state = generator.decode_chunk(generator.init_state(*args, rows=2), 20)
    saved = generator.park_row(state, 0)
    assert generator.free_slots(state) == [0, 1]
    # Resumed in another slot of a state with other length buckets, as after a resize.
    other = generator.empty_state(4, prompt_capacity=64, new_capacity=256)
    generator.resume_row(other, 3, saved)
    while not generator.finished_rows(other):
        other = generator.decode_chunk(other, 8)
    assert generator.release_row(other, 3) == whole


def test_interactive_requests_never_park_each_other(generator) -> None:
    apps = {f"app{i}": _request(30 + i, max_tokens=400 + 40 * i) for i in range(4)}
    late = {"late": _request(40, max_tokens=10)}
    log = _logged_scheduler(generator, {**apps, **late}, max_batch=4)
    sched = log.scheduler
    arrival = _arrive_when_full(log, apps, late)
    try:
        for req in apps.values():
            sched.submit(req)
        late["late"].future.result(timeout=120)
    finally:
        sched.close()
    assert sched.stats.parked == 0
    # It waited for the shortest to finish (app0): the passes before it carried all four.
    joined = next(i for i, rows in enumerate(log.passes) if "late" in rows)
    assert joined > arrival[0]
    assert all(rows == sorted(apps) for rows in log.passes[arrival[0] : joined])
    assert log.passes[joined] == ["app1", "app2", "app3", "late"]


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
