"""Lanes: the broker queues jobs travel in, and how far each one's consumers have read.

Generation jobs travel in two lanes: ``interactive`` (jobs submitted one by one) and ``batch``
(chunks of batch items); training jobs in ``train``. A generate worker reads ``interactive``
before ``batch``, so a bulk batch never holds up an app's requests; a batch's chunks are also
released a few at a time by the pacer, so the broker never holds a whole batch.

Each lane has a companion queue, ``<lane>.redo``, that its workers read first: the reconciler
publishes there what must not wait behind the lane's backlog again (a lost message, a rescued
job, a retry whose backoff has passed, a failed publish).

The broker hands out a lane's messages in order, so once a job published at ``t`` has been
claimed, every job of that lane published well before ``t`` (``REORDER_S``) should have been
claimed too. One
still queued has lost its message; the reconciler re-publishes it even while the lane is busy.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.jobs import jobtypes
from shared.tables import Job, Lane

REDO = ".redo"
# How far apart two jobs' publish stamps may be and still reach the broker out of order: a job
# is stamped at insert and sent after its commit, from several API processes (and the embedded
# broker orders messages by the millisecond only). Only a job stamped this much before one
# already claimed counts as lost; a smaller margin re-publishes jobs merely waiting their turn.
REORDER_S = 1.0
INTERACTIVE, BATCH, TRAIN = "interactive", "batch", "train"
# The lanes a worker of each job-type family reads, first to last.
FAMILY_LANES: dict[str, tuple[str, ...]] = {"generate": (INTERACTIVE, BATCH), "train": (TRAIN,)}


def lane_of(job: Job) -> str:
    """Return the lane a job's messages travel in."""
    return type_lane(job.type, batch=job.batch_id is not None)


def type_lane(type_name: str, *, batch: bool) -> str:
    """Return the lane of a job type's jobs: submitted alone, or as batch items."""
    lanes = FAMILY_LANES[jobtypes.get(type_name).queue]
    return lanes[-1] if batch else lanes[0]


def redo(lane: str) -> str:
    """Return the queue a lane's workers read before the lane itself."""
    return lane + REDO


def consume_order(families: str) -> str:
    """Return the queues, in reading order, of a worker serving comma-listed job-type families.

    Each lane's redo queue comes right before the lane, and earlier lanes before later ones.
    """
    names = [n for n in families.split(",") if n]
    return ",".join(q for name in names for lane in FAMILY_LANES[name] for q in (redo(lane), lane))


def all_lanes() -> list[str]:
    """Return every lane, in the order the workers of each family read them."""
    return [lane for lanes in FAMILY_LANES.values() for lane in lanes]


def all_queues() -> list[str]:
    """Return every queue of every lane."""
    return consume_order(",".join(FAMILY_LANES)).split(",")


def watermarks(sessions: sessionmaker[Session]) -> dict[str, datetime]:
    """Return, per lane, the latest publish time of any job claimed from it."""
    with sessions() as session:
        rows = session.execute(select(Lane.name, Lane.consumed_through))
        return {name: at for name, at in rows if at is not None}


def advance(sessions: sessionmaker[Session], consumed: dict[str, datetime]) -> None:
    """Move lanes' watermarks forward (never back) to the given publish times."""
    with sessions() as session:
        for name, at in consumed.items():
            moved = session.execute(
                update(Lane)
                .where(Lane.name == name)
                .where((Lane.consumed_through.is_(None)) | (Lane.consumed_through < at))
                .values(consumed_through=at)
            )
            if not moved.rowcount and session.get(Lane, name) is None:
                _create(session, name, at)
        session.commit()


def _create(session: Session, name: str, at: datetime) -> None:
    try:
        with session.begin_nested():
            session.add(Lane(name=name, consumed_through=at))
    except IntegrityError:
        pass  # another worker created it first; its value is as good as ours
