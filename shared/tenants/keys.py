"""API keys: random, shown once, stored as a SHA-256; each belongs to a tenant and has scopes.

A key carries 256 random bits, so a plain SHA-256 is as good as a slow password hash here, and
lets a request find its key by one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db import utcnow
from shared.errors import InputError, NotFound
from shared.tables import ApiKey, Tenant
from shared.tenants.accounts import get_tenant

JOBS_READ, JOBS_WRITE, MODELS_WRITE, ADMIN = "jobs:read", "jobs:write", "models:write", "admin"
SCOPES = (JOBS_READ, JOBS_WRITE, MODELS_WRITE, ADMIN)
USER_SCOPES = (JOBS_READ, JOBS_WRITE, MODELS_WRITE)  # a new key's scopes unless told: no admin
KEY_PREFIX = "aigc_"
KEY_NAME_MAX = 128
# The tenant of the local admin key `aigc up` creates, and of every request when auth is off.
LOCAL_TENANT = "local"
# A verified key is trusted this long without asking the database again; a revocation reaches
# every API process at once over Redis, and within this long without it.
CACHE_TTL_S = 5.0


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a tenant, through one key, with its scopes."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID | None
    scopes: frozenset[str]
    rate_limit: str | None = None  # the tenant's own limit per key, if it has one

    @property
    def is_admin(self) -> bool:
        """Return whether this key may manage and read across tenants."""
        return ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        """Return whether the key grants ``scope`` (admin grants every scope)."""
        return scope in self.scopes or self.is_admin

    def sees(self, owner: uuid.UUID | None, shared: bool = False) -> bool:
        """Return whether this principal may read a resource of ``owner`` (shared: by all)."""
        return shared or self.is_admin or owner == self.tenant_id


def hash_key(key: str) -> str:
    """Return the stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def check_scopes(scopes: list[str]) -> list[str]:
    """Return the scopes, or raise InputError naming one that does not exist."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InputError(f"unknown scopes {unknown}; known: {list(SCOPES)}", field="scopes")
    return sorted(set(scopes))


class KeyStore:
    """Creates, lists, revokes and verifies keys; verified keys are cached per process."""

    def __init__(
        self, sessions: sessionmaker[Session], on_revoke: Callable[[], None] | None = None
    ) -> None:
        self.sessions = sessions
        self.on_revoke = on_revoke  # tells other processes to drop their cached verifications
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self._local: Principal | None = None
        self._lock = threading.Lock()

    def local_principal(self, tenant_name: str) -> Principal:
        """Return a principal with every scope in the named tenant (auth turned off)."""
        if self._local is None:
            tenant = get_tenant(self.sessions, name=tenant_name, create=True)
            self._local = Principal(tenant.id, None, frozenset(SCOPES))
        return self._local

    def create(self, tenant_name: str, name: str, scopes: list[str]) -> tuple[str, ApiKey]:
        """Create a key for a tenant (created if new); return the key, shown only now."""
        scopes = check_scopes(scopes)  # before anything is stored
        if not name or len(name) > KEY_NAME_MAX:
            raise InputError(f"a key's name is 1 to {KEY_NAME_MAX} characters", field="name")
        tenant = get_tenant(self.sessions, name=tenant_name, create=True)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(
            tenant_id=tenant.id,
            name=name,
            prefix=key[: len(KEY_PREFIX) + 6],
            hash=hash_key(key),
            scopes=scopes,
        )
        with self.sessions() as session:
            session.add(row)
            session.commit()
        return key, row

    def list(self, tenant_name: str | None = None) -> list[dict[str, Any]]:
        """Return every key (or a tenant's), without the secrets."""
        stmt = select(ApiKey, Tenant.name).join(Tenant).order_by(Tenant.name, ApiKey.created_at)
        if tenant_name:
            stmt = stmt.where(Tenant.name == tenant_name)
        with self.sessions() as session:
            rows = session.execute(stmt).all()
        return [
            {
                "id": str(k.id),
                "tenant": tenant,
                "name": k.name,
                "prefix": k.prefix,
                "scopes": k.scopes,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k, tenant in rows
        ]

    def revoke(self, key_id: uuid.UUID) -> None:
        """Revoke a key: from now on it authenticates nothing."""
        with self.sessions() as session:
            done = session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            session.commit()
        if not done.rowcount:
            raise NotFound("no such key, or it was revoked already")
        self.forget()
        if self.on_revoke is not None:
            self.on_revoke()

    def forget(self) -> None:
        """Drop every cached verification (a key was revoked somewhere)."""
        with self._lock:
            self._cache.clear()

    def verify(self, key: str) -> Principal | None:
        """Return the principal a key stands for, or None if it is unknown or revoked."""
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        with self.sessions() as session:
            row = session.execute(
                select(ApiKey.tenant_id, ApiKey.id, ApiKey.scopes, Tenant.rate_limit)
                .join(Tenant)
                .where(ApiKey.hash == digest, ApiKey.revoked_at.is_(None))
            ).first()
        principal = Principal(row[0], row[1], frozenset(row[2]), row[3]) if row else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (principal, now + CACHE_TTL_S)
        return principal
