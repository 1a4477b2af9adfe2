"""The Celery application both sides share: the API publishes by task name, workers consume."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from shared.config import Settings
from shared.jobs.jobtypes import QUEUES

RUN_JOB_TASK = "aigc.run_job"
RUN_CHUNK_TASK = "aigc.run_chunk"
RECONCILE_TASK = "aigc.reconcile"


def make_celery(settings: Settings) -> Celery:
    """Create a Celery app configured for at-least-once delivery with ids-only JSON messages."""
    settings.ensure_dirs()
    app = Celery("aigc", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        # JSON only: pickle would let a broker writer run code on workers.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        # The database is the result store; Celery results would expire and lie.
        task_ignore_result=True,
        # Ack after the job ran, one message at a time, so a dead worker's message is not lost.
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        # A child killed by a signal is acked; the job row's lease and the reconciler retry it.
        task_reject_on_worker_lost=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="generate",
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
    url = settings.broker_url
    if url.startswith("filesystem://"):
        folder = str(settings.broker_dir / "queue")
        return {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "control_folder": str(settings.broker_dir / "control"),
            "polling_interval": settings.broker_poll_interval_s,
        }
    if url.startswith("sqla+"):
        return {}  # kombu hands these options to create_engine(); it accepts none of ours
    # The same visibility timeout everywhere: the shortest one in the cluster wins.
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        "socket_timeout": settings.publish_timeout_s,
        "socket_connect_timeout": settings.publish_timeout_s,
    }
