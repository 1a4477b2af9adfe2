"""The in-process fixture of the shared package's tests: services on an empty database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import migrate
from shared.config import Settings
from shared.services import Services, build_services
from tests.conftest import _check_postgres, need
from tests.support import scratch_database


@pytest.fixture(params=["postgres", "embedded"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    """A store on an empty database of each kind, with the filesystem broker.

    A test may ask for ``s3`` too (indirect parametrization): PostgreSQL, with the artifacts
    in a bucket of the tests' S3 server.
    """
    storage = request.getfixturevalue("s3_server").settings() if request.param == "s3" else {}
    if request.param in ("postgres", "s3"):
        need("PostgreSQL", _check_postgres())
        url = scratch_database("store")
    else:
        url = f"sqlite:///{tmp_path}/store.sqlite3"
    settings = Settings(
        database_url=url,
        broker_url="filesystem://",
        broker_dir=tmp_path / "broker",
        artifact_dir=tmp_path / "artifacts",
        plugins=["tests.fixtures.jobtypes"],
        **storage,
    )
    migrate.upgrade(settings)
    services = build_services(settings)
    yield services
    services.close()
