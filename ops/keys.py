"""The local admin key that `aigc up` creates on first start, and the key the CLI sends."""

from __future__ import annotations

import os
from pathlib import Path

from shared.config import Settings
from shared.tenants.keys import LOCAL_TENANT, SCOPES, KeyStore


def ensure_local_admin_key(keys: KeyStore, settings: Settings) -> str | None:
    """Create the local admin key unless the key file holds a live one; return a new key.

    The key is written to ``api_key_file`` (mode 600) where the CLI finds it; the caller prints
    it, once.
    """
    if not settings.auth_required:
        return None
    current = read_key(settings.api_key_file)
    if current and keys.verify(current) is not None:
        return None
    key, _ = keys.create(LOCAL_TENANT, "local admin (aigc up)", list(SCOPES))
    _write_private(settings.api_key_file, key + "\n")
    return key


def cli_key(settings: Settings) -> str | None:
    """Return the key the CLI sends: ``AIGC_API_KEY``, else the local admin key file's."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    return read_key(settings.api_key_file)


def read_key(path: Path) -> str | None:
    """Return the key stored in a file, or None if there is none."""
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)  # readers see the old key or the new one, never half of it
