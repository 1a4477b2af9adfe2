"""Publishing in-process: stamps before messages land, and which waiting jobs count as lost."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from shared.db import utcnow
from shared.delivery import reconciler
from shared.delivery.lanes import INTERACTIVE
from shared.delivery.reconciler import publish_due, reconcile_once
from shared.observe.depth import broker_messages
from shared.services import Services
from shared.tables import Job


def test_a_due_job_is_stamped_before_its_message_can_be_claimed(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = svc.store
    jobs = store.create([Job(type="test.sleep", params={}) for _ in range(2)])
    store.mark_published([j.id for j in jobs], published=False)  # a failed publish, say
    seen: list[tuple[bool, int | None]] = []
    stamp = store.mark_published

    def watched(job_ids: list, *, published: bool = True) -> None:
        # A worker claims a job as soon as its message lands: count the messages at the stamp.
        seen.append((published, broker_messages(svc.publisher)[INTERACTIVE]))
        stamp(job_ids, published=published)

    monkeypatch.setattr(svc.publisher, "mark_published", watched)
    assert publish_due(store, svc.publisher) == 2
    assert seen == [(True, 0)]
    assert all(store.get(j.id).published_at is not None for j in jobs)
    assert broker_messages(svc.publisher)[INTERACTIVE] == 2


def _published_long_ago(svc: Services, n: int) -> list[Job]:
    jobs = svc.store.create([Job(type="test.sleep", params={}) for _ in range(n)])
    with svc.store.sessions() as session:  # its message went out an hour ago, and never came
        session.execute(
            update(Job)
            .where(Job.id.in_([j.id for j in jobs]))
            .values(published_at=utcnow() - timedelta(hours=1))
        )
        session.commit()
    return jobs


def test_a_job_in_an_empty_lane_is_lost_only_if_no_worker_took_it_meanwhile(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconciler, "TAKE_GRACE_S", 0.3)
    lost, taken = _published_long_ago(svc, 2)
    # First seen queued with its lane empty: maybe a worker has just taken its message.
    assert reconcile_once(svc.store, svc.publisher, svc.settings).republished == 0
    # The worker's claim lands: that job was never lost.
    claimed = svc.store.claim(
        [taken.id], "h:1:aaaa", lease_s=30, time_limits={}, default_limit_s=60, running_cap=10
    )
    assert [j.id for j in claimed] == [taken.id]
    time.sleep(0.3)
    assert reconcile_once(svc.store, svc.publisher, svc.settings).republished == 1
    assert broker_messages(svc.publisher)[INTERACTIVE] == 1
    assert svc.store.get(lost.id).published_at > utcnow() - timedelta(minutes=1)
