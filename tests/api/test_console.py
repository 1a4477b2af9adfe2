"""The console's files, served in-process: open without a key, hardened, and no part of the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api import create_app
from shared.config import Settings
from shared.jobs.status import TERMINAL


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path}/aigc.sqlite3",
        broker_url="filesystem://",
        broker_dir=tmp_path / "broker",
        artifact_dir=tmp_path / "artifacts",
    )


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


def test_the_pages_need_no_key_and_allow_only_their_own_origin(client: FlaskClient) -> None:
    assert client.get("/console").status_code == 308  # to /console/: relative URLs resolve
    page = client.get("/console/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'<script type="module" src="js/app.js">' in page.data
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    script = client.get("/console/js/app.js")
    assert script.status_code == 200 and "javascript" in script.mimetype
    assert client.get("/console/js/no-such-file.js").status_code == 404
    assert client.get("/v1/jobs").status_code == 401  # the API itself still wants a key


def test_config_tells_the_pages_what_the_server_knows(
    client: FlaskClient, settings: Settings
) -> None:
    config = client.get("/console/config.json").json
    defaults = {"text": settings.default_text_model, "image": settings.default_image_model}
    assert config["default_models"] == defaults
    assert set(config["terminal_statuses"]) == set(TERMINAL)
    types = {t["name"]: t for t in config["job_types"]}
    assert types["text.train"]["model"] == "target" and types["text.train"]["queue"] == "train"
    assert types["text.generate"]["params"]["properties"]["max_tokens"]["maximum"] == 2048


def test_the_console_is_not_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").json["paths"]
    assert paths and not [p for p in paths if p.startswith("/console")]
