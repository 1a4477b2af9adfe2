"""Engine and session set-up for the job store (PostgreSQL in production, SQLite embedded)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from shared.config import Settings


class Base(DeclarativeBase):
    """Declarative base of every table."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that always comes back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


def make_engine(
    settings: Settings, *, pool_size: int | None = None, overflow: int | None = None
) -> Engine:
    """Create an engine whose every wait on the database has a deadline.

    Connecting gives up after ``db_connect_timeout_s``; PostgreSQL ends a statement after
    ``db_statement_timeout_s``, and a transaction left idle as long, and the kernel drops a
    connection whose peer stopped answering after ``db_tcp_user_timeout_s``. Pooled connections
    are recycled instead of pinged on every checkout (a round trip per transaction). The pool
    is sized to the threads that use it; ``overflow`` (default ``db_max_overflow``) is how many
    more it opens for a burst.
    """
    url = settings.database_url
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=settings.db_max_overflow if overflow is None else overflow,
        pool_timeout=settings.db_connect_timeout_s,
        pool_recycle=settings.db_pool_recycle_s,
        connect_args=_pg_connect_args(settings),
    )


# TCP keepalive probes (seconds idle, seconds apart, probes lost): a peer that vanished is
# noticed in about 11 s, by the client and, through the same values, by the server.
KEEPALIVE = {"idle": 5, "interval": 2, "count": 3}


def _pg_connect_args(settings: Settings) -> dict[str, Any]:
    statement_ms = int(settings.db_statement_timeout_s * 1000)
    user_timeout_ms = int(settings.db_tcp_user_timeout_s * 1000)
    # The server side too: a client cut off inside a transaction (its FIN lost with the link)
    # leaves a backend idle in that transaction, holding its row locks, until something ends it.
    # Without these, every later UPDATE of those jobs (the reconciler's rescue) fails on its lock
    # timeout for hours, and the jobs never end.
    server = {
        "statement_timeout": statement_ms,
        "lock_timeout": statement_ms,
        "idle_in_transaction_session_timeout": statement_ms,
        "tcp_user_timeout": user_timeout_ms,
        **{f"tcp_keepalives_{k}": v for k, v in KEEPALIVE.items()},
    }
    return {
        "connect_timeout": max(1, round(settings.db_connect_timeout_s)),
        "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
        "keepalives": 1,
        **{f"keepalives_{k}": v for k, v in KEEPALIVE.items()},
        "tcp_user_timeout": user_timeout_ms,
    }


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    # WAL lets the API read while a worker writes; busy_timeout waits out "database is locked".
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_session_factory(engine: Engine) -> sessionmaker:
    """Return a session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
