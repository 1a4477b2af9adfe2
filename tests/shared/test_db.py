"""Every wait on PostgreSQL ends: a client gone quiet inside a transaction loses its locks."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from shared.config import Settings
from shared.db import make_engine
from tests.conftest import _check_postgres, need
from tests.support import scratch_database, wait_for

pytestmark = pytest.mark.integration


def _can_update(conn: Connection) -> bool:
    try:
        with conn.begin():
            conn.execute(text("UPDATE locks SET n = n + 1 WHERE id = 1"))
        return True
    except DBAPIError:  # the lock timeout: the row is still held
        return False


def test_a_transaction_left_idle_is_ended_and_its_row_locks_freed() -> None:
    # What the server sees of a worker cut off mid-transaction (the link gone, its FIN lost):
    # a backend idle in the transaction, its row locks held, and no client ever coming back.
    need("PostgreSQL", _check_postgres())
    settings = Settings(database_url=scratch_database("idle_tx"), db_statement_timeout_s=1.0)
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE locks (id int PRIMARY KEY, n int)"))
            conn.execute(text("INSERT INTO locks VALUES (1, 0)"))
        quiet = engine.connect()
        quiet.begin()
        quiet.execute(text("UPDATE locks SET n = n + 100 WHERE id = 1"))  # then never a word more
        with engine.connect() as other:
            other.execute(text("SET lock_timeout = 100"))  # ms: try often while the row is held
            other.commit()
            wait_for(lambda: _can_update(other), 30, 0.2, "the server to end the idle transaction")
            # The quiet writer's +100 is gone: its transaction was ended, not committed.
            assert other.execute(text("SELECT n FROM locks WHERE id = 1")).scalar() == 1
        with pytest.raises(DBAPIError):
            quiet.execute(text("SELECT 1"))  # the server ended that session
        quiet.invalidate()
    finally:
        engine.dispose()
