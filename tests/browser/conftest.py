"""Fixtures of the browser tests: Debian's Chromium under Playwright, a console tab per test,
and small models trained through the API for the console to generate with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.driver import CHROMIUM, CHROMIUM_ARGS, Console, open_console
from tests.conftest import Stack, need
from tests.integration.test_models import TINY_IMAGE, TINY_TEXT, TRAIN_TIMEOUT_S
from tests.support import Api

TENANT = "browser"  # every test's key is this tenant's: it owns the models trained here
TEXT_MODEL, IMAGE_MODEL = "browser-text", "browser-image"
IMAGE_EPOCHS = 3  # enough points for a curve
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Launch Debian's Chromium (skip without it; fail under CI)."""
    missing = (
        None if CHROMIUM.exists() else FileNotFoundError(f"{CHROMIUM} (apt-get install chromium)")
    )
    need("Chromium", missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def user(stack: Stack) -> Api:
    """Return a client with a new key of the browser tests' tenant."""
    return stack.client(TENANT)


@pytest.fixture
def console(browser: Any, stack: Stack, tmp_path: Path) -> Iterator[Console]:
    """Open a console tab; fail the test if the page met any error meanwhile."""
    tab = open_console(browser, stack.api.base_url, tmp_path, viewport=DESKTOP)
    yield tab
    problems = list(tab.problems)  # before closing: closing aborts what is still open
    tab.page.context.close()
    tab.problems = problems
    tab.check()


def _train(api: Api, kind: str, model: str, params: dict[str, Any]) -> dict[str, Any]:
    job = api.wait(api.submit(f"{kind}.train", params, model=model)["id"], TRAIN_TIMEOUT_S)
    assert job["status"] == "succeeded", job
    return job


@pytest.fixture(scope="module")
def text_model(stack: Stack) -> str:
    """Train a tiny text model as the tenant; return its name."""
    _train(stack.client(TENANT), "text", TEXT_MODEL, TINY_TEXT)
    return TEXT_MODEL


@pytest.fixture(scope="module")
def image_training(stack: Stack) -> dict[str, Any]:
    """Train a tiny image model as the tenant, a few epochs; return the finished job."""
    return _train(stack.client(TENANT), "image", IMAGE_MODEL, dict(TINY_IMAGE, epochs=IMAGE_EPOCHS))
