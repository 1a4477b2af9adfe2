"""The narrow objects a request uses, taken from the current app (the FastAPI template's deps).

The app factory builds them once (``api/__init__.py``); a view asks for the one it needs (the
job store, the settings, the registry…), never for the whole service container.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from flask import current_app
from sqlalchemy import Engine

from shared.config import Settings
from shared.data.artifacts import ArtifactStore
from shared.delivery.publish import Publisher
from shared.jobs.events import Hub
from shared.jobs.store import JobStore
from shared.jobs.streams import TextStreams
from shared.models.registry import ModelRegistry
from shared.tenants.keys import KeyStore
from shared.types import Sessions

SERVICES = "aigc"  # the app's extension that holds them
HUB = "aigc.hub"


def _part(name: str) -> Any:
    return getattr(current_app.extensions[SERVICES], name)


def settings() -> Settings:
    """Return the app's settings."""
    return _part("settings")


def store() -> JobStore:
    """Return the job store."""
    return _part("store")


def sessions() -> Sessions:
    """Return the factory of database sessions."""
    return _part("store").sessions


def publisher() -> Publisher:
    """Return the publisher of job messages."""
    return _part("publisher")


def registry() -> ModelRegistry:
    """Return the model registry."""
    return _part("registry")


def keys() -> KeyStore:
    """Return the store of API keys."""
    return _part("keys")


def artifacts() -> ArtifactStore:
    """Return the artifact store."""
    return _part("artifacts")


def text_streams() -> TextStreams | None:
    """Return the jobs' streamed text (None without Redis)."""
    return _part("streams")


def engine() -> Engine:
    """Return the database engine (the readiness probe pings it)."""
    return _part("engine")


def celery() -> Celery:
    """Return the Celery app (the readiness probe pings its broker)."""
    return _part("celery")


def hub() -> Hub:
    """Return the app's hub of job events, shared by every waiting request."""
    return current_app.extensions[HUB]
