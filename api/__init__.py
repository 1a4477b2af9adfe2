"""The HTTP API: validates requests, writes job rows and publishes job ids by task name.

It never imports ``worker``, TensorFlow or Keras.
"""

from __future__ import annotations

from flask import Flask, current_app

from shared.config import Settings, get_settings
from shared.services import Services, build_services


def create_app(settings: Settings | None = None) -> Flask:
    """Create the Flask app with its services, blueprints and error handlers."""
    from api import artifacts, batches, datasets, health, jobs, models, openapi, problems

    settings = settings or get_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["aigc"] = build_services(settings)
    problems.init_app(app)
    for module in (jobs, batches, artifacts, datasets, models, health, openapi):
        app.register_blueprint(module.bp)
    return app


def services() -> Services:
    """Return the services of the current app."""
    return current_app.extensions["aigc"]
