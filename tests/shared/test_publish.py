"""Publishing in-process: the reconciler's publishes are stamped before their messages land."""

from __future__ import annotations

import pytest

from shared.delivery.lanes import INTERACTIVE
from shared.delivery.reconciler import publish_due
from shared.observe.depth import broker_messages
from shared.services import Services
from shared.tables import Job


def test_a_due_job_is_stamped_before_its_message_can_be_claimed(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = svc.publisher.store
    jobs = store.create([Job(type="test.sleep", params={}) for _ in range(2)])
    store.mark_published([j.id for j in jobs], published=False)  # a failed publish, say
    seen: list[tuple[bool, int | None]] = []
    stamp = store.mark_published

    def watched(job_ids: list, *, published: bool = True) -> None:
        # A worker claims a job as soon as its message lands: count the messages at the stamp.
        seen.append((published, broker_messages(svc.publisher)[INTERACTIVE]))
        stamp(job_ids, published=published)

    monkeypatch.setattr(store, "mark_published", watched)
    assert publish_due(store, svc.publisher) == 2
    assert seen == [(True, 0)]
    assert all(store.get(j.id).published_at is not None for j in jobs)
    assert broker_messages(svc.publisher)[INTERACTIVE] == 2
