"""What every section of the bench shares: the run's objects."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from bench import e2e
from bench.report import Report
from bench.stack import Stack
from shared.services import Services
from shared.tenants.keys import USER_SCOPES

EARLIER = "earlier issue"  # the note on a target set before issue 9


def client_for(svc: Services, base_url: str, tenant: str) -> e2e.Client:
    """Return a client of the API at ``base_url`` with a new key of ``tenant``, a user's scopes."""
    key, _ = svc.keys.create(tenant, "bench", list(USER_SCOPES))
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
        return client_for(self.svc, self.stack.url(api), tenant)

    def platform(self) -> dict[str, int]:
        """Return the roots of every platform process: API, worker, reconciler and servers."""
        return self.stack.roots(
            *self.stack.servers, api="api", worker="gen", reconciler="reconciler"
        )
