"""Restarts: a stopped worker hands back what it cannot finish, and nothing runs serialised after.

Issue 18, part 2. A SIGTERM, then a SIGKILL at the stop grace (what ``aigc up`` does), with every
job thread busy on a job longer than the grace; and solo jobs waiting at the gate. Asserted from
the jobs' own records (which process ran them, and when), never from wall time.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from shared.tables import Job
from tests.conftest import Stack, private_stack
from tests.support import wait_for

pytestmark = pytest.mark.integration

JOBS = 16  # one per job thread of the worker
GRACE_S = 2.0  # the stack's stop grace: SIGKILL this long after SIGTERM
JOB_S = 6.0  # longer than the grace and the wait for all to start: none finishes before the kill


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with a job thread per job and a short stop grace, on servers of its own."""
    tmp = tmp_path_factory.mktemp("restarts")
    with private_stack(tmp, "restarts", generate_threads=JOBS, stop_grace_s=GRACE_S) as stack:
        yield stack


def _pids(stack: Stack, job_id: str, effect: str) -> list[int]:
    return [int(line.split()[0]) for line in stack.effects(job_id, effect)]


def _interval(job: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(job["started_at"]), datetime.fromisoformat(job["finished_at"])


def _most_at_once(jobs: list[dict[str, Any]]) -> int:
    """Return the most runs that overlapped at one moment (a run's start is such a moment)."""
    runs = [_interval(j) for j in jobs]
    return max(sum(s <= at < f for s, f in runs) for at, _ in runs)


def test_a_restart_hands_back_its_jobs_and_they_run_side_by_side_after(busy: Stack) -> None:
    params = {"seconds": JOB_S, "steps": int(JOB_S * 10)}
    ids = [busy.api.submit("test.sleep", params)["id"] for _ in range(JOBS)]
    for job_id in ids:
        wait_for(lambda j=job_id: busy.effects(j, "start"), 60, what=f"job {job_id} to start")
    old = busy.worker.child.pid
    busy.worker.stop()  # SIGTERM, then SIGKILL at the grace
    print("the stopped worker's exit status:", busy.worker.child.proc.returncode)
    busy.worker.start()
    new = busy.worker.child.pid
    done = [busy.api.wait(i, timeout_s=120) for i in ids]
    for job in done:
        assert job["status"] == "succeeded", job
        # Handed back: the cut run costs no attempt, leaves no error, and marks no suspect.
        assert job["attempts"] == 1 and not job["errors"], job
        assert busy.services.store.get(uuid.UUID(job["id"])).solo is False
        assert _pids(busy, job["id"], "start") == [old, new]
        assert _pids(busy, job["id"], "done") == [new]
    at_once = _most_at_once(done)
    print(f"the replacement worker ran {at_once} of {JOBS} jobs at once")
    assert at_once == JOBS


def test_jobs_waiting_at_the_solo_gate_are_not_taken_for_lost(busy: Stack) -> None:
    reconciler = busy.handle("reconciler").child
    offset = len(reconciler.log_text())
    tenant, params = busy.api.tenant_id, {"seconds": 2.0, "steps": 20}
    rows = [
        Job(type="test.sleep", params=params, max_attempts=3, solo=True, tenant_id=tenant)
        for _ in range(3)
    ]
    jobs = busy.services.store.create(rows)
    assert busy.services.publisher.publish(jobs, stamped=True) == len(jobs)
    done = sorted((busy.api.wait(str(j.id), timeout_s=120) for j in jobs), key=_interval)
    assert [j["status"] for j in done] == ["succeeded"] * len(jobs)
    assert _most_at_once(done) == 1  # one at a time: the last waited for two runs before it
    assert [len(busy.effects(j["id"], "start")) for j in done] == [1] * len(jobs)
    # None of them was published again while it waited (the reconciler logs what it did).
    republished = re.findall(r"republished=(\d+)", reconciler.log_text(offset))
    assert set(republished) <= {"0"}, republished
