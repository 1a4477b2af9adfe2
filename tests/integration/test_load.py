"""Two hundred clients at once: each answer is a 202, a 503 or a 429, and each 202 is one row.

Before admission control a gevent API process took a thousand requests at once against a pool
of 5 + 10 connections: the pool's timeouts came back as 500s, and requests whose deadline fired
after their commit were told 503 for jobs that then ran (a retry would make a duplicate).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from shared.tables import Job
from tests.conftest import Stack, private_stack

pytestmark = pytest.mark.integration

CLIENTS, JOBS = 200, 10_000
ANSWERS = {202, 429, 503}  # accepted, over a cap or a limit, or busy: never a 500
BODY = {"type": "test.sleep", "params": {"seconds": 0, "steps": 1}}


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack on a database and a Redis of its own, whose queue may grow by ten thousand."""
    with private_stack(tmp_path_factory.mktemp("load"), "load") as stack:
        yield stack


def _client(base_url: str, key: str, count: int, seen: list[tuple[int, str | None]]) -> None:
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {key}"
        for _ in range(count):
            resp = http.post(f"{base_url}/v1/jobs", json=BODY, timeout=60)
            job_id = resp.json()["id"] if resp.status_code == 202 else None
            seen.append((resp.status_code, job_id))


def test_two_hundred_clients_get_only_202_503_or_429_and_each_202_is_one_row(
    crowded: Stack,
) -> None:
    api = crowded.client("crowd")
    crowded.worker.stop()  # the jobs stay queued: the API and the database take all the load
    seen: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def client(_: int) -> None:
        mine: list[tuple[int, str | None]] = []
        _client(api.base_url, api.key or "", JOBS // CLIENTS, mine)
        with lock:
            seen.extend(mine)

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    codes = Counter(code for code, _ in seen)
    with crowded.services.store.sessions() as session:
        rows = set(session.scalars(select(Job.id).where(Job.tenant_id == api.tenant_id)))
        count = session.scalar(select(func.count()).where(Job.tenant_id == api.tenant_id))
    accepted = {uuid.UUID(job_id) for code, job_id in seen if code == 202}
    print(f"load: {CLIENTS} clients x {JOBS} POST /v1/jobs: {dict(codes)}; {count} rows")
    assert len(seen) == JOBS
    assert set(codes) <= ANSWERS, codes
    assert rows == accepted  # every 202 is a row, and no row was answered with an error
    assert count == codes[202]
