"""The settings: which broker a URL names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.config import Settings


@pytest.mark.parametrize(
    ("url", "kind", "embedded"),
    [
        ("filesystem://", "filesystem", True),
        ("redis://127.0.0.1:6379/0", "redis", False),
        ("rediss://:secret@cache:6380/1", "redis", False),
        ("amqp://guest@rabbit//", "amqp", False),
        ("sqla+sqlite:///var/broker.sqlite3", "sqlalchemy", True),
    ],
)
def test_the_broker_kind_comes_from_the_url_scheme(url: str, kind: str, embedded: bool) -> None:
    settings = Settings(broker_url=url)
    assert settings.broker_kind == kind
    assert settings.is_embedded is embedded


def test_a_broker_we_do_not_run_on_is_refused_when_the_settings_load() -> None:
    with pytest.raises(ValidationError, match="broker_url must be filesystem://"):
        Settings(broker_url="memory://")
