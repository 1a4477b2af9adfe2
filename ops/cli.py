"""The ``aigc`` command line: run the stack and its processes, and migrate the database.

The commands that go through the API (``ops.client_cli``) and the operator commands that talk
to the database directly (``ops.admin_cli``) are added to the same ``aigc`` group.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ops import client_cli
from ops.admin_cli import keys, tenants
from shared.config import get_settings
from shared.tenants.keys import KeyStore


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """aigc-queue: a job queue for AI-generated content."""
    ctx.obj = _open_keys  # how the operator commands (ops.admin_cli) reach the key store


@contextmanager
def _open_keys() -> Iterator[KeyStore]:
    """Open the deployment's key store for one operator command, and close its engine."""
    from shared.services import build_keys

    store, engine = build_keys(get_settings())
    try:
        yield store
    finally:
        engine.dispose()


@main.command()
@click.option("--no-bootstrap", is_flag=True, help="Do not train default models on first start.")
def up(no_bootstrap: bool) -> None:
    """Run the API, one worker and the reconciler on this machine; Ctrl-C stops them all."""
    from ops.launcher import run_stack

    sys.exit(run_stack(get_settings(), bootstrap=not no_bootstrap))


@main.command()
@click.option(
    "--workers", type=int, default=None, help="gunicorn worker processes (AIGC_API_WORKERS)."
)
def api(workers: int | None) -> None:
    """Run the HTTP API under gunicorn."""
    from ops.launcher import exec_command
    from ops.processes import api_command
    from shared.observe.export import MULTIPROC_ENV, metrics_env, reset_dir

    settings = get_settings()
    if workers:
        settings = settings.model_copy(update={"api_workers": workers})
    env = metrics_env(settings, "api", None)
    reset_dir(Path(env[MULTIPROC_ENV]))
    exec_command(api_command(settings), env)


@main.command()
@click.option("--queues", "-Q", default=None, help="Comma-separated queues (generate,train).")
@click.option("--concurrency", "-c", type=int, default=None, help="Processes (or threads).")
@click.option(
    "--pool",
    default=None,
    type=click.Choice(["prefork", "threads", "solo"]),
    help="Default: threads for a generate-only worker (so jobs batch), else prefork.",
)
@click.option("--name", "-n", default=None, help="Worker node name, e.g. gpu0@%h.")
@click.option("--gpu", default=None, help="The one GPU this worker uses (CUDA_VISIBLE_DEVICES).")
@click.option(
    "--metrics-port", type=int, default=None, help="Its metrics port (AIGC_METRICS_PORT; 0: off)."
)
def worker(
    queues: str | None,
    concurrency: int | None,
    pool: str | None,
    name: str | None,
    gpu: str | None,
    metrics_port: int | None,
) -> None:
    """Run a Celery worker consuming the given queues (one worker process per GPU).

    Workers sharing a host need their own ``--name`` (their metrics folders are named after it)
    and their own ``--metrics-port``.
    """
    from ops.launcher import exec_command
    from ops.processes import default_pool, gpu_env, worker_command
    from shared.observe.export import MULTIPROC_ENV, metrics_env, reset_dir

    settings = get_settings()
    queues = queues or settings.worker_queues
    pool, default_concurrency = default_pool(settings, queues, pool)
    name = name or (f"gpu{gpu}@%h" if gpu is not None else None)
    cmd = worker_command(
        queues=queues,
        concurrency=concurrency or default_concurrency,
        pool=pool,
        name=name,
        quiet=settings.log_format == "json",
    )
    env = metrics_env(settings, name or f"worker-{queues}", metrics_port)
    reset_dir(Path(env[MULTIPROC_ENV]))
    exec_command(cmd, {**gpu_env(settings, gpu), **env})


@main.command()
@click.option("--once", is_flag=True, help="Run one pass and exit.")
def reconcile(once: bool) -> None:
    """Re-publish lost messages and rescue jobs of dead workers, periodically."""
    import signal
    import threading

    from shared.delivery.reconciler import reconcile_once, run_forever
    from shared.observe.depth import DepthCollector
    from shared.observe.export import exposed_registry, serve
    from shared.observe.logs import configure_logging
    from shared.services import build_services

    configure_logging(get_settings())
    svc = build_services(get_settings())
    if once:
        click.echo(json.dumps(vars(reconcile_once(svc.store, svc.publisher, svc.settings))))
        return
    # The queue depths (the autoscaling signal) come from the reconciler: every deployment runs one.
    depths = DepthCollector(svc.sessions, svc.publisher)
    serve(svc.settings, exposed_registry(svc.settings, depths))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_forever(svc.store, svc.publisher, svc.artifacts, svc.settings, stop)


@main.command()
def gc() -> None:
    """Expire results and files past their retention and remove orphan files, once."""
    from shared.data.retention import sweep
    from shared.services import build_services

    svc = build_services(get_settings())
    click.echo(json.dumps(vars(sweep(svc.store, svc.artifacts, svc.settings))))


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations."""
    from shared import migrate

    migrate.upgrade(get_settings())
    click.echo("database is up to date")


for command in (*client_cli.COMMANDS, keys, tenants):
    main.add_command(command)

if __name__ == "__main__":
    main()
