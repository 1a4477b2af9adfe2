"""Builds the long-lived objects a process needs from the settings, once.

Only the composition roots import this module (``lint-imports`` checks it): the app factory
(``api/__init__.py``), the worker entry (``worker/app.py``), the server CLI (``ops/cli.py``), the
launcher of ``aigc up`` (``ops/launcher.py``) and the bench (``bench/context.py``). Each hands
every other function the narrow parts it uses (``sessions``, ``store``, ``publisher``,
``settings``, a ``KeyStore``…), typed by ``shared.types``.
"""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from sqlalchemy import Engine

from shared.config import Settings
from shared.data.artifacts import ArtifactStore
from shared.data.stores import open_store
from shared.db import make_engine, make_session_factory
from shared.delivery.celery_app import make_celery
from shared.delivery.publish import Publisher
from shared.jobs import jobtypes
from shared.jobs.cache import StatusCache
from shared.jobs.store import JobStore
from shared.jobs.streams import TextStreams
from shared.models.registry import ANNOUNCED_LATEST_TTL_S, LATEST_TTL_S, ModelRegistry
from shared.tenants.keys import KeyStore
from shared.types import Sessions


@dataclass
class Services:
    """The engine, job store, Celery app and publisher of one process."""

    settings: Settings
    engine: Engine
    store: JobStore
    celery: Celery
    publisher: Publisher
    artifacts: ArtifactStore
    registry: ModelRegistry
    keys: KeyStore
    streams: TextStreams | None = None  # decoded text for SSE readers; needs Redis

    @property
    def sessions(self) -> Sessions:
        """Return the factory of sessions on the process's database."""
        return self.store.sessions

    def close(self) -> None:
        """Release connections and pools."""
        self.engine.dispose()


def build_services(
    settings: Settings, *, threads: int | None = None, overflow: int | None = None
) -> Services:
    """Create the services described by ``settings``.

    ``threads``: how many threads of this process use the database at once; the pool holds as
    many connections, so none is opened and closed per job under load. ``overflow``: how many
    more it may open for a burst (0: never more, as the API's admission keeps it).
    """
    settings.ensure_dirs()
    jobtypes.load_plugins(settings.plugins)
    engine = make_engine(settings, pool_size=threads, overflow=overflow)
    cache = _status_cache(settings)
    sessions = make_session_factory(engine)
    store = JobStore(sessions, cache)
    celery = make_celery(settings)
    publisher = Publisher(celery, settings, store.mark_published)
    artifacts = ArtifactStore(
        open_store(settings),
        sessions,
        settings.artifact_dir,
        cache_bytes=settings.artifact_cache_mb * 1024 * 1024,
        presign_ttl_s=settings.artifact_presign_ttl_s,
    )
    registry = ModelRegistry(
        sessions,
        latest_ttl_s=ANNOUNCED_LATEST_TTL_S if cache else LATEST_TTL_S,
        on_change=(lambda: cache.announce_change("models")) if cache else None,
    )
    keys = _key_store(sessions, cache)
    streams = TextStreams(cache.redis) if cache else None
    return Services(settings, engine, store, celery, publisher, artifacts, registry, keys, streams)


def build_keys(settings: Settings) -> tuple[KeyStore, Engine]:
    """Create only the key store (and its engine, to dispose of) for an operator command."""
    engine = make_engine(settings)
    return _key_store(make_session_factory(engine), _status_cache(settings)), engine


def _status_cache(settings: Settings) -> StatusCache | None:
    if not settings.redis_url:
        return None
    return StatusCache(settings.redis_url, settings.status_cache_ttl_s)


def _key_store(sessions: Sessions, cache: StatusCache | None) -> KeyStore:
    # A revocation is announced on Redis so every API process drops its cached verifications.
    return KeyStore(sessions, on_revoke=(lambda: cache.announce_change("keys")) if cache else None)
