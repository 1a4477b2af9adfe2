"""The web console in headless Chromium against the real stack (API, workers, PostgreSQL, Redis).

Each test signs in with a key and drives the pages as a person would; the ``console`` fixture
fails it on any console error, uncaught exception, failed request or unexpected error answer.
Screenshots of each page go to the test's folder (and ``docs/console.png`` with
``AIGC_SCREENSHOTS=1``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from shared.tenants.keys import ADMIN
from tests.browser.conftest import IMAGE_EPOCHS, IMAGE_MODEL, TENANT
from tests.browser.driver import Console
from tests.conftest import Stack
from tests.integration.test_models import TINY_TEXT
from tests.support import Api

# Not marked ml, though the worker trains small models for them: `make test` runs the ml tests a
# second time on JAX, and the console does not depend on the backend.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("stack", ["postgres"], indirect=True),
]

JOB_END_MS = 120_000
# Pieces of text as the page showed them: a MutationObserver on the live text records each.
RECORD_PIECES = """() => {
  window.pieces = [];
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) window.pieces.push(n.textContent.length);
  }).observe(document.querySelector("pre.generated"), { childList: true });
}"""


def test_sign_in_says_why_a_key_is_refused_and_accepts_a_good_one(
    console: Console, user: Api
) -> None:
    console.expect(401, r"/v1/jobs\?limit=1$")
    console.open("#/jobs")
    console.heading("Sign in")  # signed out: every page leads here
    console.page.get_by_label("API key").fill("aigc_not-a-key")
    console.page.get_by_role("button", name="Sign in").click()
    alert = console.page.get_by_role("alert")
    expect(alert).to_contain_text("The API did not accept the key")
    expect(alert).to_contain_text("unknown or revoked")
    console.shot("login-refused")
    console.page.get_by_label("API key").fill(user.key or "")
    console.page.get_by_role("button", name="Sign in").click()
    console.heading("Jobs")
    banner = console.page.get_by_role("region", name="Default models")
    expect(banner).to_contain_text("no version yet")  # the test stack trains no default model
    console.shot("jobs")


def test_a_text_job_shows_its_tokens_as_they_are_decoded(
    console: Console, user: Api, text_model: str
) -> None:
    console.sign_in(user.key or "")
    console.go("Submit")
    form = console.page.get_by_role("form", name="Text")
    form.get_by_label("Model").select_option(text_model)
    form.get_by_label("Prompt").fill("The ")
    form.get_by_label("Tokens to generate").fill("400")
    form.get_by_label("Seed (optional)").fill("3")
    form.get_by_role("button", name="Generate text").click()
    console.page.wait_for_selector("pre.generated", state="attached")
    console.page.evaluate(RECORD_PIECES)
    expect(form.get_by_test_id("job-status")).to_contain_text("succeeded", timeout=JOB_END_MS)
    job_id = form.get_by_role("link", name="job ").get_attribute("href").rsplit("/", 1)[1]
    done = user.job(job_id)
    shown = form.locator("section.result pre.generated")
    expect(shown).to_be_visible()
    assert shown.text_content() == done["result"]["text"]
    pieces = console.page.evaluate("window.pieces")
    assert len(set(pieces)) >= 2, f"the text came whole, not as it was decoded: {pieces}"
    console.shot("submit-text")
    form.get_by_role("link", name="job ").click()
    console.heading("Job text.generate")
    expect(console.page.locator("pre.json")).to_contain_text('"max_tokens": 400')
    expect(console.page.locator("dl.facts")).to_contain_text("Finished")
    console.shot("job-text")
    console.go("Jobs")
    row = console.page.locator(f'tr[data-id="{job_id}"]')
    expect(row).to_contain_text("succeeded")


def test_an_image_job_shows_its_images(console: Console, user: Api, image_training: dict) -> None:
    console.sign_in(user.key or "")
    console.go("Submit")
    form = console.page.get_by_role("form", name="Images")
    form.get_by_label("Model").select_option(IMAGE_MODEL)
    form.get_by_label("Number of images").fill("3")
    form.get_by_role("button", name="Generate images").click()
    images = form.get_by_role("list", name="Generated images").get_by_role("img")
    expect(images).to_have_count(3, timeout=JOB_END_MS)
    _wait_loaded(console, "form ul.gallery img", 3)
    console.shot("submit-images")


def _wait_loaded(console: Console, selector: str, count: int) -> None:
    """Wait until ``count`` images matching ``selector`` have loaded (natural width > 0)."""
    console.page.wait_for_function(
        """([selector, count]) => {
          const imgs = [...document.querySelectorAll(selector)];
          return imgs.length === count && imgs.every((i) => i.complete && i.naturalWidth > 0);
        }""",
        arg=[selector, count],
    )


def test_a_training_job_shows_its_curves_and_sample_grid(
    console: Console, user: Api, image_training: dict
) -> None:
    console.sign_in(user.key or "")
    console.go("Training")
    table = console.page.get_by_role("table", name="Training jobs, newest first")
    table.locator(f'a[href="#/jobs/{image_training["id"]}"]').click()
    console.heading("Job image.train")
    charts = console.page.get_by_role(
        "img", name="GAN losses per epoch: d_loss and g_loss by epoch"
    )
    expect(charts).to_be_visible()
    expect(console.page.locator("svg.chart .s0 circle")).to_have_count(IMAGE_EPOCHS)
    _wait_loaded(console, ".grid-sample img", 1)
    console.shot("job-training", readme=True)
    console.page.get_by_text("Show the numbers").click()
    numbers = console.page.get_by_role("table", name="GAN losses per epoch")
    expect(numbers.locator("tbody tr")).to_have_count(IMAGE_EPOCHS)
    console.shot("job-training-numbers")


def test_a_running_training_job_is_canceled_from_its_page(console: Console, user: Api) -> None:
    console.sign_in(user.key or "")
    console.go("Training")
    form = console.page.get_by_role("form", name="Train a model")
    form.get_by_label("Kind").select_option("text.train")
    form.get_by_label("Model name").fill("browser-canceled")
    form.get_by_label("Preset").select_option("tiny")
    form.get_by_label("Epochs").fill("200")
    extra = {k: v for k, v in TINY_TEXT.items() if k not in ("preset", "epochs")}
    form.get_by_label("More parameters (JSON object, optional)").fill(
        json.dumps(dict(extra, max_chars=200_000))
    )
    form.get_by_role("button", name="Start training").click()
    console.heading("Job text.train")
    status = console.page.get_by_test_id("job-status")
    expect(status).to_contain_text("running", timeout=JOB_END_MS)
    progress = console.page.get_by_test_id("job-progress")
    expect(progress).to_contain_text("epochs done", timeout=JOB_END_MS)  # its first steps ran
    console.shot("training-running")
    console.page.get_by_role("button", name="Cancel").click()
    expect(status).to_contain_text("canceled", timeout=JOB_END_MS)
    expect(console.page.get_by_role("button", name="Cancel")).to_be_hidden()
    console.shot("training-canceled")
    assert user.get("/v1/models/browser-canceled").status_code == 404  # no version registered


def test_a_batch_page_shows_its_counts_and_downloads_its_results(
    console: Console, user: Api, text_model: str, tmp_path: Path
) -> None:
    console.sign_in(user.key or "")
    console.go("Batches")
    form = console.page.get_by_role("form", name="Submit a batch")
    form.get_by_label("Type").select_option("text.generate")
    form.get_by_label("Model (name or name:version)").fill(text_model)
    items = [
        {"custom_id": f"item-{i}", "params": {"prompt": "The ", "max_tokens": 20}} for i in range(3)
    ]
    form.get_by_label("Items (JSON lines)").fill("\n".join(json.dumps(i) for i in items))
    form.get_by_role("button", name="Submit batch").click()
    console.heading("Batch")
    expect(console.page.get_by_text("Status: completed")).to_be_visible(timeout=JOB_END_MS)
    console.shot("batch")
    with console.page.expect_download() as download:
        console.page.get_by_role("button", name="Download results (JSONL)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == [i["custom_id"] for i in items]
    assert all(line["status"] == "succeeded" and line["result"]["text"] for line in lines)
    console.go("Batches")
    expect(console.page.get_by_role("table", name="Recent batches")).to_contain_text("completed")
    console.shot("batches")


def test_models_and_the_fleet_for_users_and_admins(
    console: Console, user: Api, stack: Stack, text_model: str
) -> None:
    console.expect(403, r"/v1/fleet$")
    console.expect(404, r"/v1/fleet$")  # until the API reports its fleet
    console.sign_in(user.key or "")
    console.go("Models")
    section = console.page.get_by_role("region", name=text_model)
    expect(section).to_contain_text("bits_per_char")
    console.shot("models")
    console.go("Fleet")
    unavailable = re.compile("admin scope only|does not report its fleet")  # 403, or 404 before
    expect(console.page.locator("main")).to_contain_text(unavailable)
    console.page.get_by_role("button", name="Sign out").click()
    admin = stack.client(TENANT, [ADMIN])
    console.sign_in(admin.key or "")
    console.go("Fleet")
    fleet = console.page.locator("main")
    expect(fleet).not_to_contain_text("Loading")
    if "does not report its fleet" not in fleet.inner_text():
        expect(console.page.get_by_role("table", name="Workers")).to_be_visible()
    console.shot("fleet")


def test_phone_width_and_the_keyboard_alone(console: Console, user: Api) -> None:
    page = console.page
    page.set_viewport_size({"width": 390, "height": 844})
    console.open()
    console.heading("Sign in")
    expect(page.locator("h1")).to_be_focused()  # each page puts the keyboard at its title
    page.keyboard.press("Tab")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(user.key or "")
    page.keyboard.press("Enter")
    console.heading("Jobs")
    expect(page.locator("h1")).to_be_focused()
    submit = page.get_by_role("navigation", name="Pages").get_by_role("link", name="Submit")
    for _ in range(12):  # back from the title, through Sign out and the links, to Submit
        page.keyboard.press("Shift+Tab")
        if submit.evaluate("link => link === document.activeElement"):
            break
    page.keyboard.press("Enter")
    console.heading("Submit")
    sideways = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not sideways, "the page scrolls sideways at phone width"
    console.shot("phone-submit")
