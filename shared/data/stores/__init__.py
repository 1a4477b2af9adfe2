"""Where artifact files live: a local folder or S3-compatible object storage, behind one port.

A store holds objects by key (``jobs/<job>/<id>.png``, ``work/<job>/state.json``); it knows
nothing of rows, tenants or retention. ``AIGC_ARTIFACT_URL`` picks the store: ``file:///folder``
or ``s3://bucket/prefix``; without it, the folder ``AIGC_ARTIFACT_DIR``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from shared.config import Settings, split_artifact_url


@dataclass(frozen=True)
class StoredObject:
    """One object of a listing: its key, when it was last written (epoch seconds), its size."""

    key: str
    modified: float
    size: int


class ObjectStore(Protocol):
    """The operations the artifact store needs from a place that keeps files."""

    scheme: str  # the prefix of the URIs of the artifacts it holds ("local", "s3")

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, whole or not at all."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store a local file under ``key``, whole or not at all."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Return a stream of the object's bytes; NotFound if it is missing."""
        ...

    def download(self, key: str, dest: Path) -> None:
        """Write the object to a local file; NotFound if it is missing."""
        ...

    def delete(self, key: str) -> None:
        """Delete an object; a missing one is no error."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose key starts with ``prefix`` (a folder, ending in '/')."""
        ...

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Yield every object whose key starts with ``prefix``."""
        ...

    def presign(self, key: str, ttl_s: int, media_type: str) -> str:
        """Return a URL that serves the object to anyone for ``ttl_s`` seconds."""
        ...

    def local_path(self, key: str) -> Path | None:
        """Return the object's own file when the store is a folder on this host, else None."""
        ...


def open_store(settings: Settings) -> ObjectStore:
    """Return the store ``AIGC_ARTIFACT_URL`` names (default: the folder ``artifact_dir``)."""
    from shared.data.stores.local import LocalStore

    if settings.artifact_url is None:
        return LocalStore(settings.artifact_dir)
    scheme, _, path = split_artifact_url(settings.artifact_url)
    if scheme == "file":
        return LocalStore(Path(path))
    from shared.data.stores.s3 import S3Store  # boto3 is imported only where S3 is used

    return S3Store(settings)
