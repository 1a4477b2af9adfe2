"""The ``aigc`` command line: run the stack, and submit and follow jobs over HTTP."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from api.client import ApiError, Client
from shared.config import get_settings


@click.group()
def main() -> None:
    """aigc-queue: a job queue for AI-generated content."""


# -- running the stack ---------------------------------------------------------------------
@main.command()
@click.option("--no-bootstrap", is_flag=True, help="Do not train default models on first start.")
def up(no_bootstrap: bool) -> None:
    """Run the API, one worker and the reconciler on this machine; Ctrl-C stops them all."""
    from api.stack import run_stack

    sys.exit(run_stack(get_settings(), bootstrap=not no_bootstrap))


@main.command()
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
def api(workers: int) -> None:
    """Run the HTTP API under gunicorn."""
    from api.stack import api_command, exec_command

    exec_command(api_command(get_settings(), workers))


@main.command()
@click.option("--queues", "-Q", default=None, help="Comma-separated queues (generate,train).")
@click.option("--concurrency", "-c", type=int, default=None, help="Processes (or threads).")
@click.option(
    "--pool",
    default="prefork",
    show_default=True,
    type=click.Choice(["prefork", "threads", "solo"]),
)
@click.option("--name", "-n", default=None, help="Worker node name, e.g. gpu0@%h.")
def worker(queues: str | None, concurrency: int | None, pool: str, name: str | None) -> None:
    """Run a Celery worker consuming the given queues."""
    from api.stack import exec_command, worker_command

    settings = get_settings()
    exec_command(
        worker_command(
            settings,
            queues=queues or settings.worker_queues,
            concurrency=concurrency or settings.worker_concurrency,
            pool=pool,
            name=name,
        )
    )


@main.command()
@click.option("--once", is_flag=True, help="Run one pass and exit.")
def reconcile(once: bool) -> None:
    """Re-publish lost messages and rescue jobs of dead workers, periodically."""
    import threading

    from shared.reconciler import reconcile_once, run_forever
    from shared.services import build_services

    svc = build_services(get_settings())
    if once:
        click.echo(
            json.dumps(
                vars(reconcile_once(svc.store, svc.publisher, svc.settings.republish_after_s))
            )
        )
        return
    stop = threading.Event()
    try:
        run_forever(
            svc.store,
            svc.publisher,
            interval_s=svc.settings.reconcile_interval_s,
            republish_after_s=svc.settings.republish_after_s,
            stop=stop,
        )
    except KeyboardInterrupt:
        stop.set()


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations."""
    from shared import migrate

    migrate.upgrade(get_settings())
    click.echo("database is up to date")


# -- jobs over HTTP ------------------------------------------------------------------------
def _client() -> Client:
    return Client(get_settings().public_api_url)


def _parse_param(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected key=value, got {item!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


@main.command()
@click.argument("job_type")
@click.option("--model", "-m", default=None, help="Model name or name:version.")
@click.option("--param", "-p", "params", multiple=True, help="key=value (value parsed as JSON).")
def submit(job_type: str, model: str | None, params: tuple[str, ...]) -> None:
    """Submit a job and print its id."""
    body = dict(_parse_param(p) for p in params)
    job = _call(lambda: _client().submit(job_type, model, body))
    click.echo(job["id"])


@main.command()
@click.argument("job_id")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
def wait(job_id: str, timeout: float | None) -> None:
    """Wait until a job is terminal, with a progress bar; exit 1 unless it succeeded."""
    from api.progress import wait_with_bar

    job = _call(lambda: wait_with_bar(_client(), job_id, timeout))
    click.echo(json.dumps({k: job[k] for k in ("id", "status", "result", "error")}, indent=2))
    sys.exit(0 if job["status"] == "succeeded" else 1)


@main.command()
@click.option("--status", default=None)
@click.option("--type", "type_", default=None)
@click.option("--limit", default=20, show_default=True)
def jobs(status: str | None, type_: str | None, limit: int) -> None:
    """List recent jobs, newest first."""
    query = {k: v for k, v in {"status": status, "type": type_, "limit": limit}.items() if v}
    page = _call(lambda: _client().request("GET", "/v1/jobs", params=query).json())
    for job in page["data"]:
        click.echo(f"{job['id']}  {job['status']:<9}  {job['type']:<15}  {job['created_at']}")


def _call(fn: Any) -> Any:
    try:
        return fn()
    except ApiError as exc:
        raise click.ClickException(str(exc)) from None
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()
