"""At-least-once delivery with exactly-once effect: crashes, duplicates, lost messages, restarts."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from shared.tables import Job
from tests.conftest import Stack
from tests.support import wait_for

pytestmark = pytest.mark.integration

CRASH_ATTEMPTS = 2  # the limit of a job that kills its worker on every attempt


def _running_pid(stack: Stack, job_id: str) -> int:
    def pid() -> int | None:
        job = stack.api.job(job_id)
        return job["status"] == "running" and (job["progress"] or {}).get("pid")

    return wait_for(pid, 30, what="the job to report its pid")


def test_sigkill_during_a_job_reruns_it_once(stack: Stack) -> None:
    job = stack.api.submit("test.sleep", {"seconds": 4, "steps": 40})
    os.kill(_running_pid(stack, job["id"]), signal.SIGKILL)
    done = stack.api.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert len(stack.effects(job["id"], "start")) == 2
    assert len(stack.effects(job["id"], "done")) == 1


def test_a_slow_first_import_does_not_cost_the_job_its_lease(stack: Stack) -> None:
    # Its handler's module holds the GIL for longer than the lease as it is imported, as Keras's
    # first import can. Imported on the job's lease, the lease keeper could not renew it: the
    # reconciler would rescue the job, and each attempt (a fresh train process) would be lost.
    job = stack.api.wait(stack.api.submit("test.heavy_import")["id"], timeout_s=120)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1 and not job["errors"], job


def test_a_job_that_always_kills_its_worker_fails_as_worker_lost(stack: Stack) -> None:
    # Two attempts, not the stack's three: each one kills the worker, which then restarts.
    (row,) = stack.services.store.create(
        [
            Job(
                type="test.crash",
                params={"crash_attempts": 10},
                max_attempts=CRASH_ATTEMPTS,
                tenant_id=stack.api.tenant_id,
            )
        ]
    )
    assert stack.services.publisher.publish([row], stamped=True) == 1
    job_id = str(row.id)
    done = stack.api.wait(job_id, timeout_s=90)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "worker_lost"
    assert done["attempts"] == CRASH_ATTEMPTS
    assert len(stack.effects(job_id, "start")) == CRASH_ATTEMPTS


def test_the_same_message_twice_runs_the_job_once(stack: Stack) -> None:
    offset = len(stack.worker.child.log_text())
    job_id = stack.api.submit("test.sleep", {"seconds": 0.5, "steps": 5})["id"]
    row = stack.services.store.get(uuid.UUID(job_id))
    stack.services.publisher.publish([row, row], stamped=True)
    done = stack.api.wait(job_id)
    stack.services.publisher.publish([row], stamped=True)

    # Four messages of one job (the submit's and three copies): one ran it, and the worker has
    # dropped the other three, each with a line naming the job.
    def drops() -> list[str]:
        lines = stack.worker.child.log_text(offset).splitlines()
        return [line for line in lines if "messages dropped" in line and job_id in line]

    wait_for(lambda: len(drops()) >= 3, 30, what="three dropped copies", seen=drops)
    assert len(drops()) == 3, drops()
    after = stack.api.job(job_id)
    assert done["status"] == after["status"] == "succeeded"
    assert after["attempts"] == 1
    assert after["finished_at"] == done["finished_at"]
    assert len(stack.effects(job_id, "start")) == 1


def test_a_committed_job_whose_message_was_lost_is_run_by_the_reconciler(stack: Stack) -> None:
    (job,) = stack.services.store.create(
        [
            Job(
                type="test.sleep",
                params={"seconds": 0.1},
                max_attempts=3,
                tenant_id=stack.api.tenant_id,
            )
        ]
    )
    # Nothing was published: only the reconciler can find this job.
    done = stack.api.wait(str(job.id), timeout_s=30)
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1


def test_jobs_survive_a_restart_of_the_api_and_the_worker(stack: Stack) -> None:
    stack.worker.stop()
    ids = [stack.api.submit("test.sleep", {"seconds": 0.1})["id"] for _ in range(3)]
    stack.api_server.stop()
    stack.api_server.start()
    stack.api.wait_ready()
    assert {stack.api.job(i)["status"] for i in ids} == {"queued"}
    stack.worker.start()
    for job_id in ids:
        done = stack.api.wait(job_id, timeout_s=60)
        assert done["status"] == "succeeded"
        assert done["attempts"] == 1


def test_a_hard_killed_worker_loses_no_job(stack: Stack) -> None:
    job = stack.api.submit("test.sleep", {"seconds": 3, "steps": 30})
    _running_pid(stack, job["id"])
    stack.worker.kill()  # the whole worker, parent and child, as in a power cut
    stack.worker.start()
    done = stack.api.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded"
    assert len(stack.effects(job["id"], "done")) == 1
