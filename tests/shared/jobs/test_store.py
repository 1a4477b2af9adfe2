"""The job store's transitions, in-process, on PostgreSQL and on SQLite.

These pin down races a real stack only hits by chance: a cancel landing between the
reconciler's read and its write, a retry claimed before its backoff, a lease renewed past its
deadline, a stale status snapshot.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import insert, text, update

from shared import migrate
from shared.config import Settings
from shared.db import utcnow
from shared.delivery.reconciler import reconcile_once
from shared.errors import InputError, StoreUnavailable
from shared.jobs.cache import StatusCache
from shared.jobs.lifecycle import Expired, Raised
from shared.jobs.rows import claim_statement
from shared.jobs.status import JobStatus
from shared.services import Services, build_services
from shared.tables import Job
from shared.tenants.accounts import get_tenant
from tests.conftest import _check_postgres, _check_redis, need
from tests.support import CACHE_DB, REDIS_HOST, REDIS_PORT, scratch_database

pytestmark = pytest.mark.integration


def _new(svc: Services, n: int = 1) -> list[Job]:
    return svc.store.create([Job(type="test.sleep", params={}, max_attempts=3) for _ in range(n)])


def _claim(svc: Services, job: Job, token: str, limit_s: float = 600) -> list[Job]:
    return svc.store.claim(
        [job.id],
        token,
        lease_s=30,
        time_limits={},
        default_limit_s=limit_s,
        running_cap=svc.settings.tenant_max_running,
    )


def _expire_leases(svc: Services, *jobs: Job) -> None:
    with svc.store.sessions() as session:
        session.execute(
            update(Job)
            .where(Job.id.in_([j.id for j in jobs]))
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def test_a_cancel_between_the_rescues_read_and_write_is_never_lost(svc: Services) -> None:
    (job,) = _new(svc)
    _claim(svc, job, "host:1:aaaa")
    _expire_leases(svc, job)
    (seen,) = svc.store.expired_leases()
    svc.store.request_cancel(job.id)  # lands after the reconciler read the row
    assert svc.store.record(seen, Expired(charged=True)) is None  # the stale read requeues nothing
    (fresh,) = svc.store.expired_leases()
    rescued = svc.store.record(fresh, Expired(charged=True))
    assert rescued is not None and rescued.status == JobStatus.CANCELED
    assert rescued.errors[-1]["code"] == "canceled"


def test_one_loss_beside_others_is_no_evidence_and_a_second_one_is(svc: Services) -> None:
    first, second, alone = _new(svc, 3)
    for job, token in ((first, "h:7:aaaa"), (second, "h:7:bbbb"), (alone, "h:8:cccc")):
        _claim(svc, job, token)
    _expire_leases(svc, first, second, alone)
    report = reconcile_once(svc.store, svc.publisher, svc.settings)
    assert report.requeued == 3 and report.published == 3
    rows = {j.id: svc.store.get(j.id) for j in (first, second, alone)}
    for job_id in (first.id, second.id):
        # A deploy's SIGKILL or a lost host looks the same: refunded, and not suspected.
        row = rows[job_id]
        assert (row.status, row.attempts, row.solo) == (JobStatus.QUEUED, 0, False)
        assert row.errors[-1]["code"] == "worker_lost" and row.errors[-1]["charged"] is False
    row = rows[alone.id]
    assert (row.status, row.attempts, row.solo) == (JobStatus.QUEUED, 1, False)
    assert row.errors[-1]["charged"] is True and row.published_at is not None
    # The first job is present at a second loss, beside a job new to losses: only it is suspect.
    (fresh,) = _new(svc)
    for job, token in ((first, "h:9:dddd"), (fresh, "h:9:eeee")):
        _claim(svc, job, token)
    _expire_leases(svc, first, fresh)
    assert reconcile_once(svc.store, svc.publisher, svc.settings).requeued == 2
    suspect, innocent = svc.store.get(first.id), svc.store.get(fresh.id)
    assert (suspect.attempts, suspect.solo) == (0, True)
    assert [e["charged"] for e in suspect.errors] == [False, False]
    assert (innocent.attempts, innocent.solo) == (0, False)


def test_a_hand_back_requeues_its_claims_jobs_uncounted(svc: Services) -> None:
    mine, theirs = _new(svc, 2)
    _claim(svc, mine, "h:1:mine")
    _claim(svc, theirs, "h:2:them")
    assert svc.store.hand_back([mine.id, theirs.id], ["h:1:mine"]) == [mine.id]
    row = svc.store.get(mine.id)
    assert (row.status, row.attempts, row.solo, row.worker_id) == (JobStatus.QUEUED, 0, False, None)
    assert not row.errors  # the job did nothing wrong
    assert mine.id in {j.id for j in svc.store.due_unpublished()}  # published again at once
    assert svc.store.get(theirs.id).status == JobStatus.RUNNING
    assert svc.store.hand_back([mine.id], ["h:1:mine"]) == []  # a claim hands back once


def test_a_message_held_at_the_gate_is_not_taken_for_lost(svc: Services) -> None:
    held, free = _new(svc, 2)
    svc.store.hold([held.id], hold_s=30)
    later = utcnow() + timedelta(seconds=1)
    assert [j.id for j in svc.store.published_before(later)] == [free.id]
    _expire_leases(svc, held)  # its worker died while it waited: the hold runs out
    assert {j.id for j in svc.store.published_before(later)} == {held.id, free.id}


def test_a_job_that_keeps_killing_its_process_alone_ends_worker_lost(svc: Services) -> None:
    (job,) = _new(svc)
    for attempt in range(1, 4):
        (claimed,) = _claim(svc, job, f"h:{attempt}:dddd")
        assert claimed.attempts == attempt
        _expire_leases(svc, job)
        reconcile_once(svc.store, svc.publisher, svc.settings)
    row = svc.store.get(job.id)
    assert row.status == JobStatus.FAILED and row.error["code"] == "worker_lost"
    assert [e["attempt"] for e in row.errors] == [1, 2, 3]


def test_a_retry_waits_for_its_backoff_and_keeps_every_attempts_error(svc: Services) -> None:
    (job,) = _new(svc)
    (claimed,) = _claim(svc, job, "h:1:eeee")
    back = svc.store.record(claimed, Raised(StoreUnavailable("a blip"), retry_in_s=60))
    assert back.status == JobStatus.QUEUED and back.published_at is None
    assert _claim(svc, job, "h:1:ffff") == []  # a stray message cannot start it early
    assert job.id not in {j.id for j in svc.store.due_unpublished()}
    with svc.store.sessions() as session:
        session.execute(update(Job).where(Job.id == job.id).values(available_at=utcnow()))
        session.commit()
    assert job.id in {j.id for j in svc.store.due_unpublished()}
    (again,) = _claim(svc, job, "h:1:gggg")
    failed = svc.store.record(again, Raised(InputError("bad")))
    assert [(e["attempt"], e["code"]) for e in failed.errors] == [
        (1, "store_unavailable"),
        (2, "invalid_input"),
    ]
    assert failed.errors[0]["worker"] == "h:1:eeee"


def test_a_lease_is_never_renewed_past_the_deadline(svc: Services) -> None:
    late, timely = _new(svc, 2)
    _claim(svc, late, "h:1:late", limit_s=0.001)
    _claim(svc, timely, "h:1:fine", limit_s=600)
    owned = svc.store.renew(["h:1:late", "h:1:fine"], lease_s=30)
    assert owned == {timely.id: False}


def test_a_running_jobs_cancel_flag_comes_back_with_its_lease(svc: Services) -> None:
    (job,) = _new(svc)
    _claim(svc, job, "h:1:hhhh")
    assert svc.store.request_cancel(job.id).cancel_requested
    assert svc.store.renew(["h:1:hhhh"], lease_s=30) == {job.id: True}


def test_a_stale_snapshot_never_replaces_a_newer_one() -> None:
    need("Redis", _check_redis())
    cache = StatusCache(f"redis://{REDIS_HOST}:{REDIS_PORT}/{CACHE_DB}", ttl_s=60)
    job_id = str(uuid.uuid4())
    cache.put_many([{"id": job_id, "status": "succeeded", "version": 3}])
    cache.put_many([{"id": job_id, "status": "running", "version": 2}])  # a slow writer
    assert cache.get(job_id)["status"] == "succeeded"
    cache.put_many([{"id": job_id, "status": "succeeded", "version": 4}])
    assert cache.get(job_id)["version"] == 4
    redis.Redis(REDIS_HOST, REDIS_PORT, db=CACHE_DB).delete(cache.key(job_id))


def _plan_nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def test_the_claim_finds_its_jobs_by_primary_key_in_a_long_queue(tmp_path: Path) -> None:
    """The claim reads its jobs by primary key, and its tenant's running count by its index.

    It never walks the status index or the table, whose size grows with the queue.
    """
    need("PostgreSQL", _check_postgres())
    settings = Settings(
        database_url=scratch_database("claimplan"),
        broker_url="filesystem://",
        broker_dir=tmp_path / "broker",
        artifact_dir=tmp_path / "artifacts",
    )
    migrate.upgrade(settings)
    services = build_services(settings)
    tenant = get_tenant(services.store.sessions, name="busy", create=True)
    rows = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant.id,
            "type": "test.sleep",
            "params": {},
            "status": "queued",
            "attempts": 0,
            "max_attempts": 3,
            "priority": 0,
            "version": 0,
            "cancel_requested": False,
            "solo": False,
        }
        for _ in range(100_000)
    ]
    with services.engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            conn.execute(insert(Job), rows[start : start + 10_000])
        conn.execute(text("ANALYZE jobs"))
    stmt = claim_statement(
        [r["id"] for r in rows[:64]],
        "h:1:aaaa",
        lease_s=30,
        time_limits={"test.sleep": 60},
        default_limit_s=600,
        solo=False,
        running_cap=256,
    )
    compiled = stmt.compile(
        dialect=services.engine.dialect, compile_kwargs={"render_postcompile": True}
    )
    with services.engine.connect() as conn:
        (plan,) = conn.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params
        ).scalar()
    nodes = list(_plan_nodes(plan["Plan"]))
    indexes = {n.get("Index Name") for n in nodes} - {None}
    scanned = {n.get("Relation Name") for n in nodes if n["Node Type"] == "Seq Scan"}
    services.close()
    assert indexes <= {"jobs_pkey", "ix_jobs_tenant_status", "tenants_pkey"}, plan
    assert "jobs_pkey" in indexes and "jobs" not in scanned, plan
