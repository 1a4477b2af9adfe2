"""Applies the Alembic migrations in ``migrations/`` to the configured database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """Return an Alembic config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the database schema up to ``revision``."""
    settings.ensure_dirs()
    command.upgrade(alembic_config(settings.database_url), revision)


def revision(settings: Settings, message: str) -> None:
    """Autogenerate a new migration from the models (a developer tool)."""
    command.revision(alembic_config(settings.database_url), message=message, autogenerate=True)
