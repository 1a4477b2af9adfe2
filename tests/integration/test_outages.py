"""Outages of Redis and PostgreSQL, and a crowd of long polls: the stack rides them out.

The outage tests run a stack on private Redis and PostgreSQL servers (tests/services.py) that
they stop, start, freeze and thaw. Assertions are on states and counts, never timings; the
figures (how long a submit took to get its 503, say) are printed for the record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_SETTINGS, Stack, need, running_stack
from tests.services import PrivatePostgres, PrivateRedis, missing_servers, stack_values
from tests.support import wait_for

pytestmark = pytest.mark.integration

OUTAGE_S = 60  # the bar: workers ride out outages of at least a minute
ESTABLISHED = "01"  # a TCP state in /proc/net/tcp
BUSY_RETRIES = 10  # how often a long poll answered 503 (no slot free yet) is sent again


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose Redis and PostgreSQL belong to this module alone."""
    need("private Redis and PostgreSQL servers", missing_servers())
    redis, pg = PrivateRedis().start(), PrivatePostgres().start()
    tmp = tmp_path_factory.mktemp("private")
    values = stack_values(TEST_SETTINGS, tmp, redis, pg.url)
    try:
        with running_stack("private", values, tmp) as stack:
            stack.extra.update(redis=redis, pg=pg)
            yield stack
    finally:
        redis.stop()
        pg.destroy()


def _submit(stack: Stack, seconds: float = 0.1) -> requests.Response:
    body = {
        "type": "test.sleep",
        "params": {"seconds": seconds, "steps": max(1, int(seconds * 10))},
    }
    return stack.api.post("/v1/jobs", json=body)


def _all_succeed_once(stack: Stack, ids: list[str], *, rerun_allowed: bool = False) -> None:
    """Assert each job succeeded once; with ``rerun_allowed``, after runs whose end was lost."""
    for job_id in ids:
        done = stack.api.wait(job_id, timeout_s=120)
        assert done["status"] == "succeeded", done
        finished_runs = len(stack.effects(job_id, "done"))
        if rerun_allowed:  # every run before the last one left an entry in its errors
            assert 1 <= finished_runs <= len(done["errors"]) + 1, done
        else:
            assert done["attempts"] == 1 and finished_runs == 1, done


@pytest.mark.outage
def test_a_minute_without_redis_loses_no_job_and_no_worker(private: Stack) -> None:
    redis: PrivateRedis = private.extra["redis"]
    worker, pid = private.worker.child, private.worker.child.pid
    restarts = worker.restarts
    running = [_submit(private, 4).json()["id"] for _ in range(3)]
    for job_id in running:
        private.api.wait(job_id, statuses={"running"})
    redis.stop()
    try:
        during = [_submit(private) for _ in range(3)]  # accepted: the row is the job
        assert [r.status_code for r in during] == [202] * 3
        ready = private.api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] != "ok"
        time.sleep(OUTAGE_S)
    finally:
        redis.start()
    _all_succeed_once(private, running)
    _all_succeed_once(private, [r.json()["id"] for r in during])
    assert worker.restarts == restarts and worker.pid == pid, worker.log_text()[-3000:]


@pytest.mark.outage
def test_a_minute_without_postgresql_loses_no_accepted_job(private: Stack) -> None:
    pg: PrivatePostgres = private.extra["pg"]
    worker, restarts = private.worker.child, private.worker.child.restarts
    accepted = [_submit(private, 3).json()["id"] for _ in range(3)]
    for job_id in accepted:
        private.api.wait(job_id, statuses={"running"})
    pg.stop()
    try:
        refused = _submit(private)
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
        assert private.api.get("/readyz").status_code == 503
        time.sleep(OUTAGE_S)
    finally:
        pg.start()
    # Jobs that finished while the database was away could not record it: they run again.
    _all_succeed_once(private, accepted, rerun_allowed=True)
    assert worker.restarts == restarts, worker.log_text()[-3000:]
    after = _submit(private).json()["id"]
    _all_succeed_once(private, [after])


@pytest.mark.outage
def test_a_silent_database_gets_a_503_not_a_hang(private: Stack) -> None:
    pg: PrivatePostgres = private.extra["pg"]
    pg.freeze()
    try:
        started = time.monotonic()
        submit = _submit(private)
        submit_s = time.monotonic() - started
        started = time.monotonic()
        ready = private.api.get("/readyz")
        ready_s = time.monotonic() - started
        health = private.api.get("/healthz")
    finally:
        pg.thaw()
    print(
        f"silent database: submit answered {submit.status_code} in {submit_s:.2f}s, "
        f"/readyz {ready.status_code} in {ready_s:.2f}s"
    )
    assert submit.status_code == 503 and int(submit.headers["Retry-After"]) > 0
    assert submit.headers["Content-Type"] == "application/problem+json"
    assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
    assert health.status_code == 200
    _all_succeed_once(private, [_submit(private).json()["id"]])


def _accepted(port: int) -> set[int]:
    """Return the client ports of the connections to ``port`` that a server has accepted.

    A connection still in the listen backlog has no socket of its own yet: its inode in
    /proc/net/tcp is 0.
    """
    peers = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state, inode = (line.split()[i] for i in (1, 2, 3, 9))
        if state == ESTABLISHED and int(local.split(":")[1], 16) == port and inode != "0":
            peers.add(int(remote.split(":")[1], 16))
    return peers


@pytest.mark.parametrize("stack", ["postgres", "embedded"], indirect=True)
def test_hundreds_of_long_polls_leave_the_api_responsive(stack: Stack, tmp_path: Path) -> None:
    stack.worker.stop()  # the job stays queued until it is canceled
    try:
        job_id = stack.api.submit("test.sleep")["id"]
        url = f"{stack.api.base_url}/v1/jobs/{job_id}"
        returned: list[float] = []
        busy: list[int] = []

        def poll(_: int) -> str:
            # Five hundred at once may find no free slot for their first read: a 503 says come
            # back after Retry-After, as a client would (admission is tested on its own).
            for _ in range(BUSY_RETRIES):
                resp = requests.get(url, params={"wait_s": 50}, headers=stack.api.auth, timeout=120)
                if resp.status_code != 503:
                    break
                busy.append(1)
                time.sleep(float(resp.headers["Retry-After"]))
            returned.append(time.monotonic())
            return resp.json()["status"]

        port, before = stack.settings.api_port, _accepted(stack.settings.api_port)
        with ThreadPoolExecutor(500) as pool:
            polls = [pool.submit(poll, i) for i in range(500)]
            wait_for(
                lambda: len(_accepted(port) - before) >= 500,
                60,
                what="the API to accept all 500 long polls",
                seen=lambda: f"{len(_accepted(port) - before)} accepted",
            )
            health = stack.api.get("/healthz")
            healthy_at = time.monotonic()
            cancel = stack.api.post(f"/v1/jobs/{job_id}/cancel")
            statuses = [p.result() for p in polls]
    finally:
        stack.worker.start()
    print(f"long polls: {len(busy)} answers 503 busy, each retried after its Retry-After")
    assert health.status_code == 200 and cancel.status_code == 200
    assert all(t > healthy_at for t in returned), "a long poll returned before the job ended"
    assert statuses == ["canceled"] * 500  # every waiter woke at the cancel, not its timeout
