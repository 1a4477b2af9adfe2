"""Counts the project functions a ``text.generate`` job passes through: ``python -m bench.hops``.

One process plays both sides, on a private PostgreSQL database and the filesystem broker: the
Flask app answers ``POST /v1/jobs`` and ``GET /v1/jobs/<id>`` (its test client), and the worker's
``run_job`` task body runs the job (called directly: what a Celery worker calls for a message).
A first job warms every cache untraced; the second is traced with ``sys.setprofile`` (and
``threading.setprofile``, for the worker's scheduler threads). A hop is a distinct project
function (``api``, ``worker``, ``shared``, ``ops``) entered at least once; comprehensions,
lambdas and module bodies are not counted. Prints, per side and together, the functions and the
modules they live in, as JSON (``--list`` adds the names).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "worker", "shared", "ops")
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PARAMS = {"prompt": "the queue", "max_tokens": 8}


class Tracer:
    """Records the project functions entered while it is on, in any thread."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.calls = 0

    def __call__(self, frame: Any, event: str, _arg: Any) -> None:
        """The profile hook: note a call into project code."""
        if event != "call":
            return
        code = frame.f_code
        module = _project_module(code.co_filename)
        if module and not code.co_name.startswith("<"):
            self.seen.add((module, code.co_qualname))
            self.calls += 1

    def trace(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` with the hook on in this thread and in threads it starts."""
        threading.setprofile(self)
        sys.setprofile(self)
        try:
            return fn()
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]

    def summary(self, names: bool) -> dict[str, Any]:
        """Return the counts (and, with ``names``, the functions by module)."""
        modules = sorted({m for m, _ in self.seen})
        out: dict[str, Any] = {
            "functions": len(self.seen),
            "modules": len(modules),
            "calls": self.calls,
        }
        if names:
            out["by_module"] = {m: sorted(f for mm, f in self.seen if mm == m) for m in modules}
        return out


def _project_module(filename: str) -> str | None:
    try:
        rel = Path(filename).resolve().relative_to(ROOT)
    except ValueError:
        return None
    if rel.parts[0] not in PACKAGES:
        return None
    return ".".join(rel.with_suffix("").parts)


def _fresh_database(name: str) -> str:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _environment(database: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="aigc-hops-"))
    os.environ.update(
        AIGC_DATABASE_URL=_fresh_database(database),
        AIGC_BROKER_URL="filesystem://",
        AIGC_BROKER_DIR=str(work / "broker"),
        AIGC_ARTIFACT_DIR=str(work / "artifacts"),
        AIGC_AUTH_REQUIRED="false",
        AIGC_PLUGINS="bench.plugins",
    )
    os.environ.pop("AIGC_REDIS_URL", None)


def _register_model(svc: Any) -> str:
    from bench.models import register_text_model

    # Both shapes of the bench's helper: the whole services, or the two parts it uses.
    if "svc" in inspect.signature(register_text_model).parameters:
        return register_text_model(svc, "hops-text", "small")
    return register_text_model(svc.artifacts, svc.registry, "hops-text", "small")


def _one_job(http: Any, run_job: Any, model: str) -> tuple[Callable[[], str], ...]:
    """Return the three steps of one job: submit, run, read (each returns what it saw)."""
    state: dict[str, str] = {}

    def submit() -> str:
        res = http.post(
            "/v1/jobs", json={"type": "text.generate", "model": model, "params": PARAMS}
        )
        if res.status_code != 202:
            raise RuntimeError(f"submit answered {res.status_code}: {res.get_data(as_text=True)}")
        state["id"] = res.get_json()["id"]
        return state["id"]

    def run() -> str:
        return str(run_job(state["id"]))

    def read() -> str:
        body = http.get(f"/v1/jobs/{state['id']}").get_json()
        if body["status"] != "succeeded":
            raise RuntimeError(f"the job did not succeed: {body}")
        return body["status"]

    return submit, run, read


def main() -> None:
    """Run two jobs, trace the second, and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", default="aigc_hops")
    parser.add_argument("--list", action="store_true", help="Also list the functions.")
    args = parser.parse_args()
    _environment(args.database)
    from shared import migrate
    from shared.config import get_settings

    settings = get_settings()
    migrate.upgrade(settings)
    from api import create_app
    from bench.context import deployment_services  # the bench's root builds the services

    svc = deployment_services()
    model = _register_model(svc)
    from worker.app import run_job

    http = create_app(settings).test_client()
    for step in _one_job(http, run_job, model):  # warm-up: imports, caches, the model
        step()
    sides = {
        "api POST /v1/jobs": Tracer(),
        "worker run_job": Tracer(),
        "api GET the result": Tracer(),
    }
    for tracer, step in zip(sides.values(), _one_job(http, run_job, model), strict=True):
        tracer.trace(step)
    both = Tracer()
    for tracer in sides.values():
        both.seen |= tracer.seen
        both.calls += tracer.calls
    report = {name: t.summary(args.list) for name, t in sides.items()}
    report["together"] = both.summary(False)
    print(json.dumps(report, indent=2))
    svc.close()


if __name__ == "__main__":
    main()
