"""Queue depth in-process: rows counted by lane, tenant and state; broker counts; deadlines."""

from __future__ import annotations

import threading
import uuid

from prometheus_client.registry import CollectorRegistry

from shared.delivery.lanes import BATCH, INTERACTIVE, TRAIN
from shared.observe.depth import (
    HELD,
    PUBLISHED,
    RUNNING,
    SYSTEM_TENANT,
    Bounded,
    Depth,
    DepthCollector,
    broker_messages,
    job_depths,
)
from shared.services import Services
from shared.tables import Job
from tests.support import wait_for


def _jobs(type_: str, n: int, tenant_id: uuid.UUID | None, batch: bool = False) -> list[Job]:
    batch_id = uuid.uuid4() if batch else None
    return [
        Job(type=type_, params={}, tenant_id=tenant_id, batch_id=batch_id, batch_index=i)
        for i in range(n)
    ]


def test_rows_are_counted_by_lane_tenant_and_state(svc: Services) -> None:
    _, key = svc.keys.create("acme", "depth", ["jobs:read"])
    acme = key.tenant_id
    store = svc.store
    interactive = store.create(_jobs("test.sleep", 3, acme))
    held = store.create(_jobs("test.sleep", 4, acme, batch=True))
    store.mark_published([j.id for j in held], published=False)  # the pacer holds them back
    store.create(_jobs("test.train_sleep", 2, None))
    store.claim(
        [interactive[0].id],
        "host:1:test",
        lease_s=30,
        time_limits={},
        default_limit_s=60,
        running_cap=10,
    )
    assert job_depths(store.sessions) == [
        Depth(BATCH, "acme", HELD, 4),
        Depth(INTERACTIVE, "acme", PUBLISHED, 2),
        Depth(INTERACTIVE, "acme", RUNNING, 1),
        Depth(TRAIN, SYSTEM_TENANT, PUBLISHED, 2),
    ]


def test_the_broker_counts_each_lane_with_its_redo_queue(svc: Services) -> None:
    jobs = svc.store.create(_jobs("test.sleep", 3, None))
    svc.publisher.publish(jobs[:2], stamped=True)
    svc.publisher.publish(jobs[2:], stamped=True, redo=True)
    assert broker_messages(svc.publisher) == {INTERACTIVE: 3, BATCH: 0, TRAIN: 0}


def test_the_collector_exports_the_gauges(svc: Services) -> None:
    svc.store.create(_jobs("test.sleep", 2, None))
    registry = CollectorRegistry()
    registry.register(DepthCollector(svc.sessions, svc.publisher))
    labels = {"lane": INTERACTIVE, "tenant": SYSTEM_TENANT, "state": PUBLISHED}
    assert registry.get_sample_value("aigc_queue_waiting_rows", labels) == 2
    assert registry.get_sample_value("aigc_queue_messages", {"lane": BATCH}) == 0


def test_a_hung_sample_is_given_up_and_not_queued_behind() -> None:
    release = threading.Event()
    bounded = Bounded("test", timeout_s=0.1)
    assert bounded(release.wait) is None  # overstayed its deadline
    assert bounded(lambda: 1) is None  # skipped: the last call still hangs
    release.set()
    # Skipped until the hung call has returned; then calls go through again.
    assert wait_for(lambda: bounded(lambda: 1), 10, 0.01, "a call after the hung one") == 1
    assert bounded(lambda: 1 / 0) is None  # a failure is a missing sample, not an error
