"""How much work waits: messages per lane in the broker, and queued rows per lane and tenant.

The rows are the autoscaling signal: they count the batch items the pacer still holds back and
the retries waiting out their backoff, which the broker never sees (it holds a few chunks per
tenant at most). Both are read at scrape time, and by ``GET /v1/fleet``, each within a short
deadline: a broker or database that does not answer costs a scrape its samples, never the scrape.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from shared.delivery.lanes import all_lanes, redo, type_lane
from shared.delivery.publish import Publisher
from shared.errors import InputError
from shared.jobs.status import JobStatus
from shared.tables import Job, Tenant

log = logging.getLogger(__name__)

T = TypeVar("T")
SAMPLE_S = 2.0  # seconds the broker, and the database, have to answer a scrape
SYSTEM_TENANT = "system"  # the tenant label of jobs no tenant owns (the default models' training)
UNKNOWN_LANE = "unknown"  # a job type this process has not registered
# A queued row's state: a message is out for it, or none is (the pacer holds it, or a retry
# waits out its backoff); a running row is "running".
PUBLISHED, HELD, RUNNING = "published", "held", "running"


@dataclass(frozen=True)
class Depth:
    """How many jobs of one tenant are in one state in one lane."""

    lane: str
    tenant: str
    state: str
    jobs: int


def job_depths(sessions: sessionmaker[Session]) -> list[Depth]:
    """Return the queued and running jobs, counted by lane, tenant and state.

    A batch's chunk counts its items: the signal is work, whatever the chunk size.
    """
    bulk, held = Job.batch_id.is_not(None), Job.published_at.is_(None)
    work = func.sum(func.coalesce(Job.item_count, 1))
    stmt = (
        select(Tenant.name, Job.type, bulk, Job.status, held, work)
        .select_from(Job)
        .outerjoin(Tenant, Tenant.id == Job.tenant_id)
        .where(Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        .group_by(Tenant.name, Job.type, bulk, Job.status, held)
    )
    with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            # A scrape must not queue behind a slow count on the server either.
            session.execute(text(f"SET LOCAL statement_timeout = {int(SAMPLE_S * 1000)}"))
        rows = session.execute(stmt).all()
    counts: Counter[tuple[str, str, str]] = Counter()
    for tenant, type_name, is_bulk, status, is_held, jobs in rows:
        state = RUNNING if status == JobStatus.RUNNING else HELD if is_held else PUBLISHED
        counts[(_lane(type_name, bool(is_bulk)), tenant or SYSTEM_TENANT, state)] += jobs
    return [Depth(*key, jobs) for key, jobs in sorted(counts.items())]


def _lane(type_name: str, bulk: bool) -> str:
    try:
        return type_lane(type_name, batch=bulk)
    except InputError:
        return UNKNOWN_LANE


def broker_messages(publisher: Publisher) -> dict[str, int | None]:
    """Return the messages waiting in each lane and its redo queue (None: the broker cannot say)."""
    queues = [q for lane in all_lanes() for q in (lane, redo(lane))]
    counts = publisher.queue_depths(queues)
    return {
        lane: None
        if counts[lane] is None or counts[redo(lane)] is None
        else counts[lane] + counts[redo(lane)]  # type: ignore[operator]
        for lane in all_lanes()
    }


class Bounded:
    """Runs one call at a time on a thread of its own, and waits for it ``timeout_s`` at most.

    A call that overstays is left to finish on its own; until it does, the next ones are skipped
    rather than queued behind it, so a hung dependency never piles up threads or scrapes.
    """

    def __init__(self, what: str, timeout_s: float = SAMPLE_S) -> None:
        self.what = what
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"aigc-sample-{what}")
        self._last: Future | None = None

    def __call__(self, call: Callable[[], T]) -> T | None:
        """Return ``call()``, or None when it failed or did not answer in time."""
        if self._last is not None and not self._last.done():
            log.warning("%s sample skipped: the last one has not answered yet", self.what)
            return None
        self._last = self._pool.submit(call)
        try:
            return self._last.result(timeout=self.timeout_s)
        except FutureTimeout:
            log.warning("%s sample skipped: no answer within %.1fs", self.what, self.timeout_s)
        except Exception as exc:
            log.warning("%s sample skipped: %s", self.what, exc)
        return None


class DepthCollector(Collector):
    """The queue-depth gauges, sampled from the broker and the database at each scrape."""

    def __init__(self, sessions: sessionmaker[Session], publisher: Publisher) -> None:
        self._sessions, self._publisher = sessions, publisher
        self._broker = Bounded("broker")
        self._database = Bounded("database")

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Return the gauges this collector exports, without samples."""
        return iter(_families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Sample the broker and the database; a part that fails is left out of this scrape."""
        messages, waiting, running = _families()
        for lane, count in (self._broker(lambda: broker_messages(self._publisher)) or {}).items():
            if count is not None:
                messages.add_metric([lane], count)
        for depth in self._database(lambda: job_depths(self._sessions)) or []:
            if depth.state == RUNNING:
                running.add_metric([depth.lane, depth.tenant], depth.jobs)
            else:
                waiting.add_metric([depth.lane, depth.tenant, depth.state], depth.jobs)
        return iter((messages, waiting, running))


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "aigc_queue_messages",
            "Messages waiting in the broker per lane (its redo queue included).",
            labels=["lane"],
        ),
        GaugeMetricFamily(
            "aigc_queue_waiting_rows",
            "Queued jobs per lane and tenant: with a message out (published), or without one "
            "(held: batch items the pacer holds back, retries in their backoff).",
            labels=["lane", "tenant", "state"],
        ),
        GaugeMetricFamily(
            "aigc_jobs_running", "Running jobs per lane and tenant.", labels=["lane", "tenant"]
        ),
    )
