"""``aigc keys`` and ``aigc tenants``: operator commands that talk to the database directly.

They need the database settings of the deployment (``AIGC_DATABASE_URL``), not a key: they are
how the first keys come to exist. The ``aigc`` group (``ops.cli``, the root) hands them, as its
context object, the opener of the key store.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import click

from shared.errors import AigcError
from shared.tenants.accounts import list_tenants, update_tenant
from shared.tenants.keys import SCOPES, USER_SCOPES, KeyStore

OpenKeys = Callable[[], AbstractContextManager[KeyStore]]


@contextmanager
def _keys() -> Iterator[KeyStore]:
    open_keys: OpenKeys = click.get_current_context().obj
    with open_keys() as store:
        try:
            yield store
        except AigcError as exc:
            raise click.ClickException(exc.message) from None


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--tenant", "-t", required=True, help="The tenant (created if new).")
@click.option("--name", "-n", default="key", show_default=True, help="A label for the key.")
@click.option(
    "--scope",
    "-s",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    help=f"Repeat for each scope (default: {', '.join(USER_SCOPES)}).",
)
def keys_create(tenant: str, name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print it: it is shown only this once."""
    with _keys() as store:
        key, row = store.create(tenant, name, list(scopes or USER_SCOPES))
    click.echo(f"created key {row.id} ({row.prefix}…) for tenant {tenant!r}", err=True)
    click.echo(key)


@keys.command("list")
@click.option("--tenant", "-t", default=None, help="Only this tenant's keys.")
def keys_list(tenant: str | None) -> None:
    """List keys (never their secrets)."""
    with _keys() as store:
        rows = store.list(tenant)
    for k in rows:
        state = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        click.echo(
            f"{k['id']}  {k['prefix']}…  {k['tenant']:<16} {','.join(k['scopes']):<40} "
            f"{k['name']}  ({state})"
        )


@keys.command("revoke")
@click.argument("key_id", type=click.UUID)
def keys_revoke(key_id: uuid.UUID) -> None:
    """Revoke a key: every API process refuses it from now on."""
    with _keys() as store:
        store.revoke(key_id)
    click.echo(f"revoked {key_id}")


@click.group()
def tenants() -> None:
    """List tenants and set their weights and caps."""


@tenants.command("set")
@click.argument("name")
@click.option("--weight", type=float, default=None, help="Share of the workers (1 = equal).")
@click.option(
    "--max-running", type=int, default=None, help="Cap on running interactive jobs (0: default)."
)
@click.option("--max-queued", type=int, default=None, help="Cap on queued jobs (0: default).")
@click.option("--rate-limit", default=None, help="Per key, e.g. 50/second (0: default).")
@click.option(
    "--retention-days", type=float, default=None, help="Results and files kept (0: default)."
)
def tenants_set(
    name: str,
    weight: float | None,
    max_running: int | None,
    max_queued: int | None,
    rate_limit: str | None,
    retention_days: float | None,
) -> None:
    """Set a tenant's weight, caps, rate limit or retention."""
    with _keys() as store:
        update_tenant(
            store.sessions,
            name=name,
            weight=weight,
            max_running=max_running,
            max_queued=max_queued,
            rate_limit=rate_limit,
            retention_days=retention_days,
        )
        rows = [t for t in list_tenants(store.sessions) if t["name"] == name]
    click.echo(json.dumps(rows[0]))


@tenants.command("list")
def tenants_list() -> None:
    """List tenants with their weights and caps (null: the setting's default)."""
    with _keys() as store:
        rows = list_tenants(store.sessions)
    for row in rows:
        click.echo(json.dumps(row))
