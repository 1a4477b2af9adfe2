"""The OpenAPI document is valid OpenAPI 3.1, every reference resolving."""

from __future__ import annotations

from pathlib import Path

from openapi_spec_validator import validate

from api import create_app
from shared.config import Settings


def test_the_openapi_document_is_valid(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/aigc.sqlite3", artifact_dir=tmp_path / "artifacts"
    )
    doc = create_app(settings).test_client().get("/openapi.json").get_json()
    validate(doc)  # raises on a dangling $ref or a schema that contradicts itself
    assert "JobStatus" in doc["components"]["schemas"]
