"""gunicorn's logger with JSON lines, for ``--logger-class`` (``AIGC_LOG_FORMAT=json``).

gunicorn sets up its own error and access loggers; this class lets it, then gives their handlers
the JSON formatter every other process uses. It imports no part of the app, so the master
process stays free of gevent until its workers patch it.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from shared.observe.logs import use_json


class JsonLogger(Logger):
    """gunicorn's error and access lines, each one JSON object."""

    def setup(self, cfg: Any) -> None:
        """Set up gunicorn's handlers, then make them write JSON."""
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            use_json(log)
