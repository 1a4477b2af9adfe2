"""Tenants in-process, on PostgreSQL and on SQLite: who may read and write models, keys, replays.

These pin down what the API tests reach only through one path: a registration racing a submit
by another tenant, publishing and unpublishing, a key's whole life, an expired replay.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from shared.db import utcnow
from shared.errors import Conflict, InputError
from shared.models.registry import ResolvedModel
from shared.services import Services
from shared.tables import ApiKey, IdempotentResponse, Tenant
from shared.tenants.accounts import get_tenant
from shared.tenants.idempotency import AlreadyStored, Claim, keep, lookup
from shared.tenants.keys import ADMIN, JOBS_READ, Principal

pytestmark = pytest.mark.integration


def _register(svc: Services, name: str, tenant: uuid.UUID | None) -> ResolvedModel:
    return svc.registry.register(
        name=name,
        kind="text",
        config={},
        artifact_id=svc.artifacts.save(None, "model", "x/y", b"m", ".keras").id,
        sha256="0" * 64,
        metrics={},
        job_id=None,
        tenant_id=tenant,
    )


def _principal(svc: Services, name: str, *scopes: str) -> Principal:
    tenant = get_tenant(svc.store.sessions, name=name, create=True)
    return Principal(tenant.id, None, frozenset(scopes or (JOBS_READ,)))


def test_system_models_are_shared_and_read_only(svc: Services) -> None:
    a = _principal(svc, "a")
    assert _register(svc, "default", None).shared
    assert svc.registry.resolve("default", "text", a).ref == "default:1"
    with pytest.raises(Conflict):
        svc.registry.check_target("default", "text", a.tenant_id)
    with pytest.raises(Conflict):
        _register(svc, "default", a.tenant_id)
    with pytest.raises(Conflict):
        svc.registry.set_shared("default", False)
    assert [m["name"] for m in svc.registry.list_models(a)] == ["default"]


def test_a_tenants_model_is_private_until_published(svc: Services) -> None:
    a, b = _principal(svc, "a"), _principal(svc, "b")
    admin = _principal(svc, "ops", ADMIN)
    assert not _register(svc, "mine", a.tenant_id).shared
    assert svc.registry.resolve("mine", "text", a).version == 1
    with pytest.raises(InputError, match="unknown model"):
        svc.registry.resolve("mine", "text", b)
    with pytest.raises(InputError, match="unknown model"):
        svc.registry.resolve("mine:1", "text", b)
    assert svc.registry.resolve("mine", "text", admin).version == 1
    assert svc.registry.list_models(b) == []
    # B may not train into the name, whether it asks at submit or registers after a race.
    with pytest.raises(Conflict, match="taken"):
        svc.registry.check_target("mine", "text", b.tenant_id)
    with pytest.raises(Conflict, match="taken"):
        _register(svc, "mine", b.tenant_id)
    assert _register(svc, "mine", a.tenant_id).version == 2
    svc.registry.set_shared("mine", True)
    assert svc.registry.resolve("mine", "text", b).ref == "mine:2"
    assert svc.registry.shares_file(svc.registry.resolve("mine:1", "text", b).artifact_id)
    with pytest.raises(Conflict):
        _register(svc, "mine", b.tenant_id)  # shared is read-only for all but its owner
    svc.registry.set_shared("mine", False)
    with pytest.raises(InputError):
        svc.registry.resolve("mine:2", "text", b)  # the cached answer went with the change


def test_a_key_is_stored_as_a_hash_and_stops_at_revoke(svc: Services) -> None:
    with pytest.raises(InputError, match="unknown scopes"):
        svc.keys.create("new-tenant", "k", ["jobs:delete"])
    with svc.store.sessions() as session:  # a refused key creates no tenant either
        assert not session.scalar(select(func.count()).select_from(Tenant))
    key, row = svc.keys.create("new-tenant", "k", [JOBS_READ])
    with svc.store.sessions() as session:
        stored = session.scalars(select(ApiKey.hash)).all()
    assert key not in stored and len(stored) == 1 and key.startswith(row.prefix)
    principal = svc.keys.verify(key)
    assert principal is not None and principal.scopes == {JOBS_READ}
    assert not principal.allows(ADMIN) and not principal.is_admin
    assert "secret" not in str(svc.keys.list()) and key not in str(svc.keys.list())
    svc.keys.revoke(row.id)
    assert svc.keys.verify(key) is None
    assert svc.keys.verify(key + "x") is None


def test_an_idempotency_key_is_kept_once_until_it_expires(svc: Services) -> None:
    tenant = get_tenant(svc.store.sessions, name="a", create=True).id
    claim = Claim(tenant, "k1", "hash-1", ttl_s=60).answer(202, {"id": "1"}, {})
    with svc.engine.begin() as conn:
        keep(conn, claim)
    with pytest.raises(AlreadyStored), svc.engine.begin() as conn:
        keep(conn, claim.answer(202, {"id": "2"}, {}))
    stored = lookup(svc.sessions, claim)
    assert stored is not None and stored.body == {"id": "1"}
    with svc.engine.begin() as conn:  # a day later
        conn.execute(update(IdempotentResponse).values(created_at=utcnow() - timedelta(seconds=61)))
    assert lookup(svc.sessions, claim) is None
    with svc.engine.begin() as conn:
        keep(conn, claim.answer(202, {"id": "3"}, {}))
    assert lookup(svc.sessions, claim).body == {"id": "3"}


def test_requests_racing_to_create_a_tenant_all_get_the_one_row(svc: Services) -> None:
    # The first requests to an API with auth off all create the local tenant at once.
    start = threading.Barrier(8)

    def create(_: int) -> uuid.UUID:
        start.wait()
        return get_tenant(svc.store.sessions, name="racing", create=True).id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(create, range(8)))
    assert len(ids) == 1
    with svc.store.sessions() as session:
        assert session.scalar(select(func.count()).where(Tenant.name == "racing")) == 1
