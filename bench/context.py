"""What every section of the bench shares: the run's objects, and the services they come from.

This is the bench's composition root: the one bench module that builds ``shared.services``. The
sections take the parts they use (``celery``, ``engine``, ``publisher``, ``artifacts``…) from
``Bench.svc``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import e2e
from bench.report import Report
from bench.stack import Stack
from shared.config import Settings, get_settings
from shared.services import Services, build_services
from shared.tenants.keys import USER_SCOPES, KeyStore

EARLIER = "earlier issue"  # the note on a target set before issue 9


def migrated_services(values: dict[str, Any]) -> Services:
    """Migrate the bench database and return services on the bench's settings."""
    from shared import migrate

    settings = Settings(**{**values, "plugins": [values["plugins"]]})
    migrate.upgrade(settings)
    return build_services(settings)


@contextmanager
def serving_stack(workdir: Path, values: dict[str, Any]) -> Iterator[tuple[Services, Stack]]:
    """Migrate, then run an API, a reconciler and a generate worker, warm; stop them after."""
    svc = migrated_services(values)
    stack = Stack(workdir, values)
    try:
        stack.start_api()
        stack.start_reconciler()
        stack.start_generate()
        stack.quiet()
        yield svc, stack
    finally:
        stack.close()
        svc.close()


def deployment_services() -> Services:
    """Return services on the deployment's own settings (``AIGC_*``), for a standalone report."""
    return build_services(get_settings())


def client_for(keys: KeyStore, base_url: str, tenant: str) -> e2e.Client:
    """Return a client of the API at ``base_url`` with a new key of ``tenant``, a user's scopes."""
    key, _ = keys.create(tenant, "bench", list(USER_SCOPES))
    return e2e.Client(base_url, key)


@dataclass
class Bench:
    """What every section of the run needs."""

    args: argparse.Namespace
    svc: Services
    stack: Stack
    client: e2e.Client
    report: Report
    models: dict[str, str]

    def client_for(self, tenant: str, api: str = "api") -> e2e.Client:
        """Return a client of the named API process with a new key of ``tenant``."""
        return client_for(self.svc.keys, self.stack.url(api), tenant)

    def platform(self) -> dict[str, int]:
        """Return the roots of every platform process: API, worker, reconciler and servers."""
        return self.stack.platform()
