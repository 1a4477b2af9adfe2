"""The fleet without services: announcements in files, and the sums ``build_fleet`` makes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from shared.config import Settings
from shared.db import utcnow
from shared.delivery.lanes import BATCH, INTERACTIVE, TRAIN
from shared.observe.depth import HELD, PUBLISHED, RUNNING, Depth
from shared.observe.fleet import Announcement, PassTotals, Presence, build_fleet


def _worker(name: str, ago_s: float = 0.0, **totals: float) -> Announcement:
    return Announcement(
        name=name,
        queues=["interactive"],
        pid=1,
        running=2,
        last_seen=utcnow() - timedelta(seconds=ago_s),
        batching=PassTotals(**totals),
    )


def test_announcements_without_redis_live_in_files_until_they_go_stale(tmp_path: Path) -> None:
    presence = Presence(Settings(metrics_dir=tmp_path, heartbeat_s=1.0, lease_s=10.0))
    presence.announce(_worker("gen@host/1"))
    presence.announce(_worker("train@host"))
    presence.announce(_worker("gone@host", ago_s=presence.ttl_s + 1))
    assert [a.name for a in presence.alive()] == ["gen@host/1", "train@host"]
    presence.announce(_worker("train@host", ago_s=presence.ttl_s + 1))  # replaced: now stale
    assert [a.name for a in presence.alive()] == ["gen@host/1"]


def test_the_fleet_sums_rows_per_lane_and_tenant_and_averages_passes() -> None:
    depths = [
        Depth(BATCH, "acme", HELD, 300),
        Depth(BATCH, "acme", PUBLISHED, 256),
        Depth(INTERACTIVE, "acme", RUNNING, 3),
        Depth(INTERACTIVE, "beta", PUBLISHED, 5),
    ]
    workers = [
        _worker("a", passes=2, rows=10, wait_s=0.5, compute_s=1.0),
        _worker("b", passes=2, rows=30, wait_s=0.1, compute_s=3.0),
    ]
    fleet = build_fleet(workers, {INTERACTIVE: 4, BATCH: None, TRAIN: 0}, depths)
    assert [(lane.name, lane.broker_messages, lane.waiting_rows) for lane in fleet.lanes] == [
        (INTERACTIVE, 4, 5),
        (BATCH, None, 556),
        (TRAIN, 0, 0),
    ]
    assert [(t.tenant, t.waiting_rows, t.running) for t in fleet.tenants] == [
        ("acme", 556, 3),
        ("beta", 5, 0),
    ]
    assert fleet.batching.model_dump() == {
        "passes": 4,
        "rows_per_pass": 10.0,
        "wait_s_per_pass": 0.15,
        "compute_s_per_pass": 1.0,
    }
    idle = build_fleet([], {}, []).batching
    assert (idle.passes, idle.rows_per_pass, idle.compute_s_per_pass) == (0, None, None)
