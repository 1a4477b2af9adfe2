"""The fleet: workers announce themselves, and ``build_fleet`` adds lanes, tenants and batching.

Every worker (a Celery node, its parent process) announces itself each ``heartbeat_s``: its name,
queues, pid, running jobs and batching totals. The announcements live in Redis keys that expire
after ``MISSED_BEATS`` heartbeats; without Redis (the one-machine defaults) in files under
``metrics_dir``, read as gone just as long after their last write. A worker that stops
announcing, whatever the reason, leaves the fleet by itself.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import redis
from pydantic import BaseModel, Field, ValidationError

from shared.config import Settings
from shared.db import utcnow
from shared.delivery.lanes import all_lanes
from shared.observe.depth import RUNNING, Depth
from shared.observe.export import safe_name

KEY_PREFIX = "aigc:fleet:"
MISSED_BEATS = 3  # heartbeats without an announcement before a worker counts as gone
REDIS_TIMEOUT_S = 1.0


class PassTotals(BaseModel):
    """A worker's forward passes since it started: how many, their rows, wait and compute."""

    passes: int = 0
    rows: float = 0.0
    wait_s: float = 0.0
    compute_s: float = 0.0


class Announcement(BaseModel):
    """What a worker says of itself at each heartbeat."""

    name: str
    queues: list[str]
    pid: int | None
    running: int
    last_seen: datetime
    batching: PassTotals = PassTotals()
    # Each loaded model's duty cycle: the share of the last minute spent in its forward passes.
    duty_cycle: dict[str, float] = {}


class FleetWorker(BaseModel):
    """A live worker: its name, the queues it reads, the jobs it runs now, its models' duty."""

    name: str
    queues: list[str]
    pid: int | None
    running: int
    last_seen: datetime
    duty_cycle: dict[str, float] = Field(
        description="Per loaded model (name:version): the share of the last minute its device "
        "spent in forward passes."
    )


class FleetLane(BaseModel):
    """A lane: messages in the broker (null: the broker did not say) and rows in the database."""

    name: str
    broker_messages: int | None
    waiting_rows: int


class FleetTenant(BaseModel):
    """A tenant with jobs waiting or running."""

    tenant: str
    waiting_rows: int
    running: int


class FleetBatching(BaseModel):
    """The live workers' forward passes: how many, and per pass its rows, wait and compute."""

    passes: int
    rows_per_pass: float | None
    wait_s_per_pass: float | None
    compute_s_per_pass: float | None


class FleetPublic(BaseModel):
    """``GET /v1/fleet``: workers, lanes, tenants and batching, as the console shows them."""

    workers: list[FleetWorker]
    lanes: list[FleetLane]
    tenants: list[FleetTenant]
    batching: FleetBatching


class Presence:
    """Where workers announce themselves: Redis keys with a TTL, else files in a folder."""

    def __init__(self, settings: Settings) -> None:
        self.ttl_s = settings.heartbeat_s * MISSED_BEATS
        self._folder = settings.metrics_dir / "fleet"
        self._redis = (
            redis.Redis.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            if settings.redis_url
            else None
        )

    def announce(self, announcement: Announcement) -> None:
        """Record a worker's announcement until ``ttl_s`` from now."""
        data = announcement.model_dump_json()
        if self._redis is not None:
            self._redis.set(KEY_PREFIX + announcement.name, data, px=int(self.ttl_s * 1000))
            return
        self._folder.mkdir(parents=True, exist_ok=True)
        path = self._folder / f"{safe_name(announcement.name)}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(data)
        tmp.replace(path)  # a reader never sees half a file

    def alive(self) -> list[Announcement]:
        """Return the announcements of the workers still alive, by name."""
        if self._redis is not None:
            keys = list(self._redis.scan_iter(match=KEY_PREFIX + "*", count=500))
            found = [_parse(v) for v in (self._redis.mget(keys) if keys else [])]
        else:
            cutoff = utcnow() - timedelta(seconds=self.ttl_s)
            found = [_parse(_read(p)) for p in self._folder.glob("*.json")]
            found = [a for a in found if a is not None and a.last_seen >= cutoff]
        return sorted((a for a in found if a is not None), key=lambda a: a.name)


def _read(path: os.PathLike[str]) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:  # replaced or removed while we listed the folder
        return None


def _parse(raw: str | bytes | None) -> Announcement | None:
    try:
        return Announcement.model_validate_json(raw) if raw else None
    except ValidationError:  # an announcement from another version: leave it out
        return None


def build_fleet(
    workers: list[Announcement], messages: dict[str, int | None], depths: list[Depth]
) -> FleetPublic:
    """Assemble the fleet from the announcements, the broker's counts and the rows' counts."""
    waiting: dict[str, int] = dict.fromkeys(all_lanes(), 0)
    tenants: dict[str, dict[str, int]] = {}
    for depth in depths:
        tenant = tenants.setdefault(depth.tenant, {"waiting_rows": 0, "running": 0})
        if depth.state == RUNNING:
            tenant["running"] += depth.jobs
        else:
            tenant["waiting_rows"] += depth.jobs
            waiting[depth.lane] = waiting.get(depth.lane, 0) + depth.jobs
    return FleetPublic(
        workers=[FleetWorker(**w.model_dump(exclude={"batching"})) for w in workers],
        lanes=[
            FleetLane(name=lane, broker_messages=messages.get(lane), waiting_rows=rows)
            for lane, rows in waiting.items()
        ],
        tenants=[FleetTenant(tenant=name, **counts) for name, counts in sorted(tenants.items())],
        batching=_batching([w.batching for w in workers]),
    )


def _batching(totals: list[PassTotals]) -> FleetBatching:
    passes = sum(t.passes for t in totals)

    def per_pass(value: float) -> float | None:
        return round(value / passes, 6) if passes else None

    return FleetBatching(
        passes=passes,
        rows_per_pass=per_pass(sum(t.rows for t in totals)),
        wait_s_per_pass=per_pass(sum(t.wait_s for t in totals)),
        compute_s_per_pass=per_pass(sum(t.compute_s for t in totals)),
    )
