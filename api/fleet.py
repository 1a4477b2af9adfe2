"""``GET /v1/fleet`` (admin): live workers, lanes and their depths, tenants' work, batching.

Each source has its own short deadline. A silent broker leaves ``broker_messages`` null, and
silent announcements (Redis) an empty list of workers; the rows come from the database, whose
silence is a 503 like anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, Response, current_app, jsonify

from api import deps
from api.auth import requires
from api.deadline import bounded
from shared.errors import StoreUnavailable
from shared.observe.depth import SAMPLE_S, broker_messages, job_depths
from shared.observe.fleet import Presence, build_fleet
from shared.tenants.keys import ADMIN

bp = Blueprint("fleet", __name__, url_prefix="/v1/fleet")

T = TypeVar("T")


@bp.get("")
@requires(ADMIN)
def get_fleet() -> Response:
    """Return the workers, lanes, tenants and batching, as the console's fleet page shows them."""
    presence = current_app.extensions.get("aigc.presence")
    if presence is None:  # one per process: its Redis connections are reused
        presence = current_app.extensions["aigc.presence"] = Presence(deps.settings())
    workers = _or(presence.alive, [])
    messages = _or(lambda: broker_messages(deps.publisher()), {})
    try:
        depths = bounded(lambda: job_depths(deps.sessions()), SAMPLE_S)
    except TimeoutError as exc:
        raise StoreUnavailable("the job store did not answer in time") from exc
    return jsonify(build_fleet(workers, messages, depths).model_dump(mode="json"))


def _or(read: Callable[[], T], default: T) -> T:
    """Return ``read()``, or ``default`` if it fails or overstays its deadline."""
    try:
        return bounded(read, SAMPLE_S)
    except Exception:
        return default
