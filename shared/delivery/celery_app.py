"""The Celery application both sides share: the API publishes by task name, workers consume."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from shared.config import Settings
from shared.delivery.lanes import INTERACTIVE, all_queues

RUN_JOB_TASK = "aigc.run_job"
RUN_CHUNK_TASK = "aigc.run_chunk"
RECONCILE_TASK = "aigc.reconcile"


def make_celery(settings: Settings) -> Celery:
    """Create a Celery app configured for at-least-once delivery with ids-only JSON messages."""
    settings.ensure_dirs()
    app = Celery("aigc", broker=settings.broker_url, set_as_current=False)
    if settings.broker_kind == "filesystem":
        app.conf.broker_transport = "shared.delivery.fs_transport:Transport"
    app.conf.update(
        # JSON only: pickle would let a broker writer run code on workers.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # The database is the result store; Celery results would expire and lie.
        task_ignore_result=True,
        # A message is a doorbell, not the job: the row, its lease and the reconciler make every
        # accepted job end. So a message is acked when it is taken, and the broker never
        # re-delivers it: no visibility timeout to outlast, no double run of a long job, and no
        # restore of unacked messages when the connection drops (on Redis that path crashes
        # the worker: celery/celery#10205, celery/kombu#1836). A message lost with a dying
        # worker is re-published by the reconciler.
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        # Keep running jobs through a broker outage; the worker reconnects for as long as it takes.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options=_transport_options(settings),
        # Each queue its own exchange and key: bare Queue(name)s would all bind to the default
        # exchange with the default queue's key, and every message would land in every queue.
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name) for name in all_queues()
        ],
        task_default_queue=INTERACTIVE,
        task_create_missing_queues=False,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        broker_connection_timeout=settings.publish_timeout_s,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "reconcile": {"task": RECONCILE_TASK, "schedule": settings.reconcile_interval_s},
        },
    )
    return app


def _transport_options(settings: Settings) -> dict[str, object]:
    if settings.broker_kind == "filesystem":
        folder = str(settings.broker_dir / "queue")
        return {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": str(settings.broker_dir / "control"),
            "polling_interval": settings.broker_poll_interval_s,
        }
    if settings.broker_kind == "sqlalchemy":
        return {}  # kombu hands these options to create_engine(); it accepts none of ours
    return {
        # No ack emulation: see task_acks_late above.
        "ack_emulation": False,
        "socket_timeout": settings.publish_timeout_s,
        "socket_connect_timeout": settings.publish_timeout_s,
        # A worker consumes its queues in the order given, not round-robin.
        "queue_order_strategy": "priority",
    }
