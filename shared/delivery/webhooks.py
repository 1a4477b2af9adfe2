"""Webhook deliveries: job and batch events, signed, sent from the worker side, retried.

A dispatcher thread of ``aigc reconcile`` turns changes into deliveries, then sends them.

- A job whose row changed since its last delivery (``webhook_version``) gets one for its state
  now, if its filter asks: ``start`` once it runs, ``progress`` when it changed while running,
  ``completed`` when it ended. Changes between two passes coalesce into the latest state.
- A batch gets ``start`` once an item ran, ``progress`` when more items ended, ``completed``
  when it ended.

Turning a change into a delivery is a conditional UPDATE of what was last told, in the
delivery's own transaction; taking a delivery to send moves its due time past the timeout with
another. Dispatchers on several hosts therefore never create or send one twice at once. A
failed attempt is retried with exponential backoff and jitter for ``webhook_retry_for_s``;
every attempt is kept on the delivery. The receiver's slowness costs the dispatcher a thread
for ``webhook_timeout_s`` at most, and never delays a job.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import urllib3
from sqlalchemy import select, text, update

from shared.config import Settings
from shared.db import utcnow
from shared.errors import InputError
from shared.jobs.batches import batch_status
from shared.jobs.reads import to_public
from shared.jobs.schemas import DEFAULT_WEBHOOK_EVENTS, WebhookEvent
from shared.jobs.status import BATCH_TERMINAL, TERMINAL, JobStatus
from shared.jobs.webhook_urls import check_url
from shared.tables import NOTIFY, NOTIFY_BATCH, Batch, Job, Tenant, WebhookDelivery
from shared.types import Sessions
from shared.webhooks import sign_headers

log = logging.getLogger(__name__)

PAGE = 200
SENDERS = 8  # deliveries in flight at once per dispatcher


def run_dispatcher(
    sessions: Sessions, settings: Settings, stop: threading.Event
) -> threading.Thread:
    """Start the dispatcher thread: it enqueues and sends every ``webhook_poll_s``."""

    def loop() -> None:
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="aigc-webhook") as pool:
            while not stop.is_set():
                try:
                    enqueue(sessions)
                    list(
                        pool.map(
                            lambda d: send(sessions, settings, d), claim_due(sessions, settings)
                        )
                    )
                except Exception:
                    log.exception("webhook pass failed; will try again")
                stop.wait(settings.webhook_poll_s)

    thread = threading.Thread(target=loop, name="aigc-webhooks", daemon=True)
    thread.start()
    return thread


def enqueue(sessions: Sessions) -> int:
    """Turn job and batch changes into deliveries; return how many were created."""
    return _enqueue_jobs(sessions) + _enqueue_batches(sessions)


def _enqueue_jobs(sessions: Sessions) -> int:
    created = 0
    with sessions() as session:
        jobs = session.scalars(select(Job).where(text(NOTIFY)).limit(PAGE)).all()
        session.expunge_all()  # read as they were: each commit below must not reload them
        for job in jobs:
            told = select(WebhookDelivery.event).where(WebhookDelivery.job_id == job.id)
            sent = set(session.scalars(told))
            event = _job_event(job, sent)
            mark = (
                update(Job)
                .where(Job.id == job.id, Job.version == job.version, text(NOTIFY))
                .values(webhook_version=job.version)
            )
            if session.execute(mark).rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()  # another dispatcher told it, or the job changed meanwhile
                continue
            if event in (job.webhook_events or DEFAULT_WEBHOOK_EVENTS):
                session.add(_delivery(job.tenant_id, job.webhook, event, to_public(job), job.id))
                created += 1
            session.commit()
    return created


def _job_event(job: Job, sent: set[str]) -> WebhookEvent | None:
    if job.status in TERMINAL:
        return "completed"
    if job.status == JobStatus.RUNNING:
        return "progress" if "start" in sent else "start"
    return None  # queued: nothing to tell


def _enqueue_batches(sessions: Sessions) -> int:
    created = 0
    with sessions() as session:
        batches = session.execute(
            select(Batch.id, Batch.webhook_state).where(text(NOTIFY_BATCH)).limit(PAGE)
        ).all()
    for batch_id, state in batches:
        view = batch_status(sessions, batch_id)
        event, new_state = _batch_event(view, state)
        if new_state == state:
            continue
        with sessions() as session:
            told = (
                update(Batch)
                .where(Batch.id == batch_id, Batch.webhook_state.is_not_distinct_from(state))
                .values(webhook_state=new_state)
                .returning(Batch.tenant_id, Batch.webhook, Batch.webhook_events)
            )
            row = session.execute(told).one_or_none()
            if row is not None and event in (row.webhook_events or DEFAULT_WEBHOOK_EVENTS):
                session.add(_delivery(row.tenant_id, row.webhook, event, view, batch=batch_id))
                created += 1
            session.commit()
    return created


def _batch_event(view: dict[str, Any], state: str | None) -> tuple[WebhookEvent | None, str | None]:
    """Return the event a batch's counts call for, and the state that records it."""
    counts = view["counts"]
    ended = sum(counts[s] for s in TERMINAL)
    started = ended + counts[JobStatus.RUNNING] > 0
    if view["status"] in BATCH_TERMINAL:
        return "completed", "ended"
    told_started, told_ended = (state or "0 0").split()
    if started and told_started == "0":
        return "start", f"1 {ended}"
    if ended > int(told_ended):
        return "progress", f"1 {ended}"
    return None, state


def _delivery(
    tenant_id: uuid.UUID | None,
    url: str | None,
    event: WebhookEvent,
    data: dict[str, Any],
    job: uuid.UUID | None = None,
    batch: uuid.UUID | None = None,
) -> WebhookDelivery:
    kind = "job" if job else "batch"
    payload = {"type": f"{kind}.{event}", "timestamp": utcnow().isoformat(), "data": data}
    return WebhookDelivery(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        job_id=job,
        batch_id=batch,
        event=event,
        url=url,
        payload=json.loads(json.dumps(payload, default=str)),
        status="pending",
        attempts=[],
        next_attempt_at=utcnow(),
        created_at=utcnow(),
    )


def claim_due(sessions: Sessions, settings: Settings) -> list[WebhookDelivery]:
    """Take the deliveries due now: their due time moves past one attempt's timeout."""
    now = utcnow()
    due = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(PAGE)
    )
    held = now + timedelta(seconds=settings.webhook_timeout_s * 4)
    stmt = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id.in_(due),
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=held)
        .returning(WebhookDelivery)
    )
    with sessions() as session:
        taken = list(session.scalars(stmt).all())
        session.commit()
        session.expunge_all()
    return taken


def send(sessions: Sessions, settings: Settings, delivery: WebhookDelivery) -> None:
    """Make one attempt at a delivery and record it: delivered, retried later, or failed."""
    started, at = time.monotonic(), utcnow()
    code, error, final = None, None, False
    try:
        code = _post(sessions, settings, delivery, at)
        if not 200 <= code < 300:
            error = f"answered {code}" + (" (redirects are not followed)" if code < 400 else "")
    except InputError as exc:  # the URL now resolves somewhere refused: never retried
        error, final = exc.message, True
    except Exception as exc:  # refused, timed out, reset: each is worth a retry
        error = f"{type(exc).__name__}: {exc}"
    attempt = {
        "attempt": len(delivery.attempts) + 1,
        "at": at.isoformat(),
        "status_code": code,
        "error": error,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    _record(sessions, settings, delivery, attempt, error is None, final)


def _post(sessions: Sessions, settings: Settings, delivery: WebhookDelivery, at: datetime) -> int:
    target = check_url(delivery.url, settings)  # resolved now, and connected to as checked
    owner = Tenant.id == delivery.tenant_id
    with sessions() as session:
        secret = session.scalar(select(Tenant.webhook_secret).where(owner))
    if not secret:
        raise InputError("the tenant has no webhook secret")
    body = json.dumps(delivery.payload)
    headers = {
        **sign_headers(secret, str(delivery.id), body, at),
        "Content-Type": "application/json",
        "User-Agent": "aigc-queue-webhooks/1",
        "Host": target.host if target.port in (80, 443) else f"{target.host}:{target.port}",
    }
    timeout = urllib3.Timeout(connect=settings.webhook_timeout_s, read=settings.webhook_timeout_s)
    if target.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            target.address, target.port, server_hostname=target.host, assert_hostname=target.host
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port)
    with pool:
        resp = pool.urlopen(
            "POST",
            target.path,
            body=body.encode(),
            headers=headers,
            redirect=False,
            retries=False,
            timeout=timeout,
            preload_content=False,
        )
        resp.read(settings.webhook_max_response_bytes)  # the answer itself is not needed
        resp.release_conn()
        return resp.status


def _record(
    sessions: Sessions,
    settings: Settings,
    delivery: WebhookDelivery,
    attempt: dict[str, Any],
    ok: bool,
    final: bool,
) -> None:
    n = attempt["attempt"]
    # Exponential, with jitter in the top quarter: gaps grow, and retries do not march together.
    delay = settings.webhook_backoff_s * 2 ** (n - 1) * (0.75 + 0.25 * random.random())
    next_at = utcnow() + timedelta(seconds=delay)
    expired = next_at > delivery.created_at + timedelta(seconds=settings.webhook_retry_for_s)
    status = "delivered" if ok else ("failed" if final or expired else "pending")
    with sessions() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(
                attempts=[*delivery.attempts, attempt],
                status=status,
                next_attempt_at=next_at if status == "pending" else utcnow(),
            )
        )
        session.commit()


def deliveries_of(sessions: Sessions, job_id: uuid.UUID) -> list[dict[str, Any]]:
    """Return a job's deliveries, oldest first, with every attempt."""
    with sessions() as session:
        rows = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id == job_id)
            .order_by(WebhookDelivery.created_at)
        )
        return [
            {
                "id": str(d.id),
                "event": d.event,
                "url": d.url,
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": d.next_attempt_at.isoformat() if d.status == "pending" else None,
                "created_at": d.created_at.isoformat(),
            }
            for d in rows
        ]
