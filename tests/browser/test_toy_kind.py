"""A model kind added by a plugin alone (tests.fixtures.toykind), through the real stack.

The stack loads the plugin the way any deployment would (``AIGC_PLUGINS``) and names the toy
kind's default model (``AIGC_DEFAULT_MODELS``): the dataset upload, the training job, the
generate job over HTTP, the console's config and its submit form all offer the kind, and the
worker loads it with the kind's loader and batches it with the kind's scheduler.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP
from tests.browser.driver import Console, open_console
from tests.conftest import Stack, private_stack
from tests.fixtures import toykind
from tests.support import Api

pytestmark = pytest.mark.integration

JOB_S = 60.0
WEIGHTS = b"1 2 3.5"  # the toy model's weights: their sum, 6.5, tags every generated text


@pytest.fixture(scope="module")
def toy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Run a stack of its own with the toy kind's plugin loaded."""
    with private_stack(
        tmp_path_factory.mktemp("toykind"),
        "toykind",
        plugins=["tests.fixtures.jobtypes", "tests.fixtures.toykind"],
        default_models=f"{toykind.KIND}={toykind.DEFAULT_MODEL}",
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def user(toy_stack: Stack) -> Api:
    """Return a client that trained the toy kind's default model from an uploaded .toy file."""
    api = toy_stack.client("toys")
    upload = api.post("/v1/datasets", files={"file": ("w.toy", io.BytesIO(WEIGHTS))})
    assert upload.status_code == 201, upload.text
    assert upload.json()["kind"] == toykind.KIND
    body = {"dataset_id": upload.json()["id"]}
    job = api.wait(api.submit("toy.train", body, model=toykind.DEFAULT_MODEL)["id"], JOB_S)
    assert job["status"] == "succeeded", job
    return api


def test_the_api_generates_with_a_kind_a_plugin_added(user: Api) -> None:
    job = user.submit("toy.generate", {"word": "hop", "repeat": 3}, model=toykind.DEFAULT_MODEL)
    done = user.wait(job["id"], JOB_S)
    assert done["status"] == "succeeded", done
    assert done["result"]["text"] == "hop hop hop (6.5)"
    assert done["result"]["model"] == f"{toykind.DEFAULT_MODEL}:1"
    assert done["result"]["served"] >= 1  # the toy kind's scheduler answered it
    models = {m["name"]: m["kind"] for m in user.get("/v1/models").json()["data"]}
    assert models[toykind.DEFAULT_MODEL] == toykind.KIND


def test_a_model_of_another_kind_is_refused_for_the_toy_job_type(user: Api) -> None:
    refused = user.submit("text.generate", {"prompt": "a"}, model=toykind.DEFAULT_MODEL, expect=422)
    assert "toy model, not text" in refused["detail"]


def test_the_console_config_serves_the_kind_and_its_default(toy_stack: Stack) -> None:
    cfg = Api(toy_stack.api.base_url).get("/console/config.json").json()
    assert cfg["default_models"][toykind.KIND] == toykind.DEFAULT_MODEL
    (toy,) = [k for k in cfg["model_kinds"] if k["name"] == toykind.KIND]
    assert toy["generate"]["job_type"] == "toy.generate"
    assert [f["name"] for f in toy["generate"]["fields"]] == ["word", "repeat"]
    assert [k["name"] for k in cfg["model_kinds"]] == ["text", "image", toykind.KIND]


@pytest.fixture
def console(browser: Any, toy_stack: Stack, tmp_path: Path) -> Iterator[Console]:
    """Open a console tab on the toy stack; fail the test if the page met any error."""
    tab = open_console(browser, toy_stack.api.base_url, tmp_path, viewport=DESKTOP)
    yield tab
    problems = list(tab.problems)
    tab.page.context.close()
    tab.problems = problems
    tab.check()


def test_the_console_submit_page_generates_with_the_toy_kind(console: Console, user: Api) -> None:
    console.sign_in(user.key or "")
    console.go("Submit")
    form = console.page.get_by_role("form", name="Toy")
    expect(form.get_by_label("Model")).to_have_value(toykind.DEFAULT_MODEL)  # the default
    expect(form.get_by_label("Repeats")).to_have_value("2")  # the params schema's default
    form.get_by_label("Word").fill("boing")
    form.get_by_role("button", name="Generate toys").click()
    expect(form.get_by_test_id("job-status")).to_contain_text("succeeded", timeout=60_000)
    expect(form.locator("section.result pre.generated")).to_have_text("boing boing (6.5)")
    console.shot("toy-kind")
