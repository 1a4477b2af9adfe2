"""The HTTP API: validates requests, writes job rows and publishes job ids by task name.

It never imports ``worker``, TensorFlow or Keras.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask

from api.deadline import Deadlines
from api.deps import HUB, SERVICES
from shared.config import Settings, get_settings
from shared.jobs.cache import CHANGES_CHANNEL
from shared.jobs.events import listen_forever, make_hub
from shared.services import build_services


def create_app(settings: Settings | None = None) -> Flask:
    """Create the Flask app with its services, blueprints and error handlers."""
    from api import (
        admission,
        artifacts,
        auth,
        batches,
        console,
        datasets,
        fleet,
        health,
        jobs,
        metrics,
        models,
        openapi,
        problems,
        ratelimit,
        webhooks,
    )

    settings = settings or get_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # A fixed pool: admission keeps the requests at once within it (api/admission.py).
    svc = build_services(settings, threads=admission.pool_size(settings), overflow=0)
    app.extensions[SERVICES] = svc  # views take their parts through api.deps
    app.extensions[HUB] = make_hub(settings, svc.store)
    if settings.redis_url:
        forget = {b"models": svc.registry.forget_latest, b"keys": svc.keys.forget}
        _forget_on_announcements(settings.redis_url, forget)
    problems.init_app(app)
    admission.init_app(app, settings)  # first: before the key check's read
    auth.init_app(app)
    ratelimit.init_app(app, settings)  # after auth: it counts per key
    for module in (jobs, batches, artifacts, datasets, models, webhooks, health, openapi, console):
        app.register_blueprint(module.bp)
    app.register_blueprint(fleet.bp)
    app.wsgi_app = Deadlines(app.wsgi_app, settings.api_request_timeout_s)  # type: ignore[method-assign]
    metrics.init_app(app)  # outside the deadline: it counts the deadline's answers too
    return app


def _forget_on_announcements(redis_url: str, forget: dict[bytes, Callable[[], None]]) -> None:
    """Drop what this process caches (latest model versions, verified keys) once it changes."""

    def on_message(_: str, what: bytes) -> None:
        forget.get(what, lambda: None)()

    threading.Thread(
        target=listen_forever,
        args=(redis_url, CHANGES_CHANNEL, on_message),
        name="aigc-changes",
        daemon=True,
    ).start()
