"""The model jobs through the real worker: train tiny models, then generate with them."""

from __future__ import annotations

import io
import itertools
import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

from shared.tenants.keys import ADMIN
from tests.conftest import Stack
from tests.support import read_events, wait_for

# Each test runs on the Keras backend the worker inherits from KERAS_BACKEND. Those marked ml
# check what the backend computes or saves, so the JAX pass of `make test` repeats them; the
# others check the API, streaming and the model cache, which no backend changes. (Canceling a
# training is tested from its console page, in tests/browser/test_console.py.)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("stack", ["postgres"], indirect=True),
]

TINY_TEXT = {"preset": "tiny", "epochs": 1, "max_chars": 20_000, "seq_len": 16, "batch_size": 32}
TINY_IMAGE = {"preset": "tiny", "epochs": 1, "image_size": 16, "max_images": 64, "batch_size": 32}
TRAIN_TIMEOUT_S = 240


def _train(stack: Stack, kind: str, name: str, params: dict) -> dict:
    job = stack.api.submit(f"{kind}.train", params, model=name)
    done = stack.api.wait(job["id"], timeout_s=TRAIN_TIMEOUT_S)
    assert done["status"] == "succeeded", done
    return done


@pytest.fixture(scope="module")
def text_model(stack: Stack) -> str:
    return _train(stack, "text", "tiny-text", TINY_TEXT)["result"]["model"]


@pytest.fixture(scope="module")
def image_model(stack: Stack) -> str:
    return _train(stack, "image", "tiny-image", TINY_IMAGE)["result"]["model"]


def _generate_text(stack: Stack, model: str, seed: int) -> dict:
    params = {"prompt": "The ", "max_tokens": 40, "temperature": 1.0, "seed": seed}
    job = stack.api.wait(stack.api.submit("text.generate", params, model=model)["id"], 120)
    assert job["status"] == "succeeded", job
    return job["result"]


@pytest.mark.ml
def test_text_model_trains_registers_and_generates(stack: Stack, text_model: str) -> None:
    assert text_model == "tiny-text:1"
    model = stack.api.get("/v1/models/tiny-text").json()
    assert model["kind"] == "text" and model["latest_version"] == 1
    metrics = model["versions"][0]["metrics"]
    assert metrics["bits_per_char"] > 0 and metrics["val_loss"] > 0
    first = _generate_text(stack, "tiny-text", seed=7)
    assert first["completion_tokens"] == 40 and first["prompt_tokens"] == 4
    assert len(first["text"]) == 40
    assert first["model"] == "tiny-text:1"
    assert _generate_text(stack, "tiny-text:1", seed=7)["text"] == first["text"]
    others = {_generate_text(stack, "tiny-text", seed=s)["text"] for s in (1, 2, 3)}
    assert len(others | {first["text"]}) > 1
    # The worker that ran them tells the fleet its model's duty cycle: busy, within a minute.
    admin = stack.client("duty-admin", [ADMIN])

    def duty() -> float | None:
        workers = admin.get("/v1/fleet").json()["workers"]
        return max((w["duty_cycle"].get(text_model, 0.0) for w in workers), default=None)

    assert 0 < wait_for(duty, 30, 0.2, "the model's duty cycle in the fleet") <= 1


def test_generated_text_streams_and_adds_up_to_the_result(stack: Stack, text_model: str) -> None:
    params = {"prompt": "The ", "max_tokens": 300, "seed": 3}
    job = stack.api.submit("text.generate", params, model=text_model)
    events = read_events(stack.api, f"/v1/jobs/{job['id']}/events")
    assert events[-1].event == "result"
    result = json.loads(events[-1].data)["result"]
    texts = [json.loads(e.data)["text"] for e in events if e.event == "text"]
    assert "".join(texts) == result["text"] and len(result["text"]) == 300


def test_another_tenant_cannot_hijack_a_model(stack: Stack, text_model: str) -> None:
    """B can neither use nor train into A's model; once published, B may use it, still not train."""
    b, admin = stack.client("hijacker"), stack.client("operator", [ADMIN])
    params = {"prompt": "The ", "max_tokens": 8}
    unknown = b.submit("text.generate", params, model="tiny-text", expect=422)
    assert unknown["errors"][0]["field"] == "model"
    artifact = stack.api.get("/v1/models/tiny-text").json()["versions"][0]["artifact_url"]
    assert b.get(artifact).status_code == 404
    refused = b.submit("text.train", TINY_TEXT, model="tiny-text", expect=409)
    assert refused["errors"][0]["field"] == "model"
    published = admin.patch("/v1/models/tiny-text", json={"shared": True})
    assert published.status_code == 200 and published.json()["shared"] is True
    done = b.wait(b.submit("text.generate", params, model="tiny-text")["id"], 120)
    assert done["status"] == "succeeded" and done["result"]["model"] == text_model
    assert b.get(artifact).status_code == 200
    b.submit("text.train", TINY_TEXT, model="tiny-text", expect=409)
    assert admin.patch("/v1/models/tiny-text", json={"shared": False}).status_code == 200
    # The owner's generation runs on the owner's one version throughout.
    assert _generate_text(stack, "tiny-text", seed=7)["model"] == text_model
    assert stack.api.get("/v1/models/tiny-text").json()["latest_version"] == 1
    assert b.get(artifact).status_code == 404


def test_generation_requests_are_validated_against_the_registry(
    stack: Stack, text_model: str, image_model: str
) -> None:
    def problem(body: dict) -> dict:
        resp = stack.api.post("/v1/jobs", json=body)
        assert resp.status_code in (409, 422), resp.text
        return resp.json() | {"status": resp.status_code}

    unknown = problem({"type": "text.generate", "model": "nope", "params": {"prompt": "x"}})
    assert unknown["status"] == 422 and unknown["errors"][0]["field"] == "model"
    wrong_kind = problem({"type": "image.generate", "model": "tiny-text", "params": {}})
    assert wrong_kind["errors"][0]["field"] == "model"
    missing = problem({"type": "text.generate", "model": "tiny-text:99", "params": {"prompt": "x"}})
    assert missing["errors"][0]["field"] == "model"
    bad_name = problem({"type": "text.train", "model": "../etc", "params": {}})
    assert bad_name["errors"][0]["field"] == "model"
    # A model whose first version is still training (a test training job: no Keras needed).
    pending = stack.api.submit("test.train", {"seconds": 60, "steps": 600}, model="pending-text")
    not_ready = problem(
        {"type": "text.generate", "model": "pending-text", "params": {"prompt": "x"}}
    )
    assert not_ready["status"] == 409 and not_ready["code"] == "model_not_ready"
    stack.api.post(f"/v1/jobs/{pending['id']}/cancel")


@pytest.mark.ml
def test_image_model_generates_pngs_deterministically(stack: Stack, image_model: str) -> None:
    def run(seed: int) -> dict:
        job = stack.api.submit("image.generate", {"n": 3, "seed": seed}, model=image_model)
        done = stack.api.wait(job["id"], 120)
        assert done["status"] == "succeeded", done
        return done["result"]

    first = run(5)
    assert len(first["images"]) == 3
    for image in first["images"]:
        resp = stack.api.get(image["url"])
        assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/png"
        assert len(resp.content) == image["size"]
        assert np.asarray(Image.open(io.BytesIO(resp.content))).shape == (16, 16)
    assert [i["sha256"] for i in run(5)["images"]] == [i["sha256"] for i in first["images"]]
    assert [i["sha256"] for i in run(6)["images"]] != [i["sha256"] for i in first["images"]]
    trained = stack.api.get("/v1/models/tiny-image").json()["versions"][0]
    assert set(trained["metrics"]) >= {"d_loss", "g_loss"}


@pytest.mark.ml
def test_batch_items_run_as_chunks_and_match_single_jobs(
    stack: Stack, text_model: str, image_model: str
) -> None:
    def batch(type_: str, model: str, items: list[dict]) -> list[dict]:
        body = {"type": type_, "model": model, "items": items}
        resp = stack.api.post("/v1/batches", json=body, timeout=60)
        assert resp.status_code == 202, resp.text
        url = f"/v1/batches/{resp.json()['id']}"
        wait_for(lambda: stack.api.get(url).json()["status"] == "completed", 180, 0.5, "batch")
        return [json.loads(x) for x in stack.api.get(f"{url}/results").text.splitlines()]

    texts = [{"prompt": "The ", "max_tokens": 30, "seed": s} for s in range(70)]
    lines = batch(
        "text.generate",
        text_model,
        [{"custom_id": str(i), "params": p} for i, p in enumerate(texts)],
    )
    assert [x["custom_id"] for x in lines] == [str(i) for i in range(70)]
    single = _generate_text(stack, text_model, seed=3)
    # Same seed, same text: a chunk's item matches a single job (the first 30 of its 40 tokens).
    assert lines[3]["result"]["text"] == single["text"][:30]
    images = batch(
        "image.generate",
        image_model,
        [{"custom_id": str(i), "params": {"n": 1, "seed": i}} for i in range(70)],
    )
    assert all(x["status"] == "succeeded" and len(x["result"]["images"]) == 1 for x in images)


def test_evicting_a_model_never_strands_its_requests(
    stack: Stack, text_model: str, image_model: str
) -> None:
    # The test stack's workers keep one model loaded: every switch between these two evicts
    # the other while its requests are still in flight (pinned, it is closed after them).
    jobs = []
    for seed in range(6):
        text = {"prompt": "The ", "max_tokens": 60, "seed": seed}
        jobs.append(stack.api.submit("text.generate", text, model=text_model))
        jobs.append(stack.api.submit("image.generate", {"n": 2, "seed": seed}, model=image_model))
    for job in jobs:
        done = stack.api.wait(job["id"], timeout_s=180)
        assert done["status"] == "succeeded", done


@pytest.mark.ml
def test_image_training_reports_losses_and_a_sample_grid(stack: Stack) -> None:
    params = dict(TINY_IMAGE, epochs=3, version_every=2)
    job = _train(stack, "image", "tiny-image-grid", params)
    progress = job["progress"]
    assert progress["epoch"] == 3 and progress["d_loss"] is not None
    assert [h["epoch"] for h in progress["history"]] == [1, 2, 3]
    assert all(h["d_loss"] is not None and h["g_loss"] is not None for h in progress["history"])
    # Interim versions after epochs 1 and 2 (every 2), and the final one after epoch 3.
    assert [v["epochs"] for v in progress["versions"]] == [1, 2]
    model = stack.api.get("/v1/models/tiny-image-grid").json()
    assert [v["metrics"]["epochs"] for v in model["versions"]] == [3, 2, 1]
    assert job["result"]["model"] == "tiny-image-grid:3"
    grid = stack.api.get(progress["grid"]["url"])
    assert grid.status_code == 200
    assert Image.open(io.BytesIO(grid.content)).size == (64, 64)  # 4 x 4 samples of 16 px


@pytest.mark.ml
def test_text_training_in_short_epochs_registers_versions_as_it_goes(stack: Stack) -> None:
    params = dict(TINY_TEXT, epochs=5, max_chars=60_000, epoch_chars=10_000, version_every=2)
    job = _train(stack, "text", "interim-text", params)
    progress = job["progress"]
    # 54,000 training characters make 3,374 windows of 16; a sixth of them is 562 windows,
    # 18 steps of 32 (a whole epoch would be 106 steps).
    assert progress["steps_per_epoch"] == 18
    history = progress["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert all(h["loss"] is not None and h["val_loss"] is not None for h in history)
    # Interim versions after epochs 1, 2 and 4, each only if better than the last one.
    interim = progress["versions"]
    assert interim[0]["epochs"] == 1 and {v["epochs"] for v in interim} <= {1, 2, 4}
    assert all(a["bits"] > b["bits"] for a, b in itertools.pairwise(interim))
    model = stack.api.get("/v1/models/interim-text").json()
    epochs = [v["metrics"]["epochs"] for v in model["versions"]]
    assert epochs == [5] + [v["epochs"] for v in reversed(interim)]
    assert job["result"]["model"] == f"interim-text:{len(interim) + 1}"
    # An interim version generates like a final one.
    _generate_text(stack, "interim-text:1", seed=1)


@pytest.mark.ml
def test_training_resumes_from_its_checkpoint_after_sigkill(stack: Stack) -> None:
    params = dict(TINY_TEXT, epochs=4, max_chars=60_000)
    job = stack.api.submit("text.train", params, model="resumed-text")

    def after_first_epoch() -> int | None:
        current = stack.api.job(job["id"])
        progress = current["progress"] or {}
        return progress.get("val_loss") is not None and progress.get("pid")

    pid = wait_for(after_first_epoch, TRAIN_TIMEOUT_S, 0.05, "the first epoch's checkpoint")
    os.kill(pid, signal.SIGKILL)
    done = stack.api.wait(job["id"], timeout_s=TRAIN_TIMEOUT_S)
    assert done["status"] == "succeeded", done
    # On two busy cores with the suite's 2 s lease, a fresh child's first compile can hold the
    # GIL past its lease before the first epoch: that attempt is lost too, with no checkpoint.
    assert done["attempts"] >= 2 and done["errors"][-1]["code"] == "worker_lost", done
    assert done["result"]["resumed_from_epoch"] >= 1
    assert stack.api.get("/v1/models/resumed-text").json()["latest_version"] == 1
