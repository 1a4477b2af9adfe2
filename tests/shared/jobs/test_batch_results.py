"""A batch's results stream: submit order across pages, each page its own short transaction."""

from __future__ import annotations

import json

import pytest

from shared.jobs import batches
from shared.jobs.batches import build_rows, stream_results
from shared.services import Services
from shared.tables import Batch

pytestmark = pytest.mark.integration


def test_results_stream_in_submit_order_across_pages(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "RESULTS_PAGE", 7)  # 3 full pages, a partial one, then the end
    batch = Batch(type="test.sleep", item_count=0)
    items = [{"custom_id": f"item-{i}", "params": {}} for i in range(25)]
    svc.store.create_batch(batch, build_rows(batch, items, settings=svc.settings, check_model=None))
    lines = [json.loads(line) for line in stream_results(svc.sessions, batch.id)]
    assert [line["custom_id"] for line in lines] == [item["custom_id"] for item in items]
    assert {line["status"] for line in lines} == {"queued"}
