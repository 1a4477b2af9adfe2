"""Fair shares: two tenants' batches drain side by side, in proportion to their weights.

The stack runs on its own Redis and database with small chunks (4 items, 2 in flight per
tenant), so that the order of a few hundred items shows the pacer's choices. The tests assert
on the order in which items started, never on timing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from shared.tables import Job
from shared.tenants.accounts import update_tenant
from tests.conftest import Stack, private_stack
from tests.support import Api, wait_for

pytestmark = pytest.mark.integration

ITEMS = 240
SLICE = 48  # starts: six chunks of each tenant when they alternate


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack on a private Redis and a scratch database, with small chunks and windows."""
    tmp = tmp_path_factory.mktemp("paced")
    with private_stack(tmp, "paced", batch_chunk_size=4, batch_window_items=8) as stack:
        yield stack


def _drain_side_by_side(stack: Stack, *clients: Api) -> tuple[list[str], list[str]]:
    """Submit one batch per client at once; return the batches, and each contended start's."""
    items = [{"custom_id": str(i), "params": {"seconds": 0.02}} for i in range(ITEMS)]
    batches = []
    for client in clients:
        resp = client.post("/v1/batches", json={"type": "test.sleep", "items": items})
        assert resp.status_code == 202, resp.text
        batches.append(resp.json()["id"])
    for client, batch_id in zip(clients, batches, strict=True):
        wait_for(
            lambda c=client, b=batch_id: c.get(f"/v1/batches/{b}").json()["status"] == "completed",
            300,
            0.5,
            "the batches to drain",
        )
    with stack.services.store.sessions() as session:
        rows = session.execute(
            select(Job.batch_id, Job.started_at, Job.item_count)
            .where(Job.batch_id.in_([uuid.UUID(b) for b in batches]))
            .order_by(Job.started_at)
        ).all()
    rows = [r for r in rows for _ in range(r.item_count)]  # a start per item of each chunk
    starts = {b: [r.started_at for r in rows if str(r.batch_id) == b] for b in batches}
    # Contended: from the first start of the last batch to arrive (the first may have run
    # alone before the second was even accepted) while every tenant still had items waiting.
    contended_from = max(min(s) for s in starts.values())
    contended_until = min(max(s) for s in starts.values())
    return batches, [
        str(r.batch_id) for r in rows if contended_from <= r.started_at <= contended_until
    ]


def test_two_tenants_batches_get_equal_shares(paced: Stack) -> None:
    a, b = paced.client("fair-a"), paced.client("fair-b")
    (first, second), order = _drain_side_by_side(paced, a, b)
    # Over the whole time both had a backlog: equal shares within 20%.
    assert 0.8 <= order.count(first) / order.count(second) <= 1.25, _shares(order)
    # And in every stretch of starts, both tenants ran: neither backlog starved the other.
    for start in range(0, len(order) - SLICE + 1, SLICE // 2):
        window = order[start : start + SLICE]
        assert SLICE / 3 <= window.count(first) <= 2 * SLICE / 3, _shares(order)


def test_weights_set_the_shares(paced: Stack) -> None:
    heavy, light = paced.client("fair-heavy"), paced.client("fair-light")
    update_tenant(paced.services.store.sessions, name="fair-heavy", weight=2)
    (light_batch, _), order = _drain_side_by_side(paced, light, heavy)
    ratio = (len(order) - order.count(light_batch)) / order.count(light_batch)
    assert 1.6 <= ratio <= 2.5, _shares(order)


def _shares(order: list[str]) -> str:
    """Describe the start order for a failure message: one letter per item, by batch."""
    letters = {b: chr(ord("A") + i) for i, b in enumerate(dict.fromkeys(order))}
    return "".join(letters[b] for b in order)
