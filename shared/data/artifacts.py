"""Stores job output files in the configured object store and records them in ``artifacts``.

An artifact's URI is ``<scheme>:<key>`` (``local:jobs/<job>/<id>.png``, ``s3:jobs/…``): the key
is relative to the store's root or prefix, so a bucket or folder can move without touching rows.
A job's private folder (its checkpoints) is a local scratch folder on the host that runs it; in
a store of another place it is mirrored under ``work/<job>/``, so another host can resume it.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session, sessionmaker

from shared.data.stores import ObjectStore
from shared.data.stores.cache import FileCache
from shared.db import utcnow
from shared.errors import Gone, NotFound
from shared.tables import Artifact

WORK = "work"  # the folder (key prefix) of jobs' private files, in the store and the scratch
CACHE = "cache"  # the scratch's folder of local copies of stored files


class ArtifactStore:
    """Writes files to one store; they are served by artifact id, never by path or key."""

    def __init__(
        self,
        store: ObjectStore,
        sessions: sessionmaker[Session],
        scratch: Path,
        *,
        cache_bytes: int,
        presign_ttl_s: int,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.scratch = scratch
        self.cache = FileCache(scratch / CACHE, cache_bytes)
        self.presign_ttl_s = presign_ttl_s

    def save(
        self,
        job_id: uuid.UUID | None,
        kind: str,
        media_type: str,
        data: bytes,
        suffix: str,
        *,
        tenant_id: uuid.UUID | None = None,
    ) -> Artifact:
        """Store ``data`` whole and record it as the tenant's; return the artifact row."""
        row = self.write(job_id, kind, media_type, data, suffix, tenant_id=tenant_id)
        with self.sessions() as session:
            session.add(row)
            session.commit()
        return row

    def write(
        self,
        job_id: uuid.UUID | None,
        kind: str,
        media_type: str,
        data: bytes,
        suffix: str,
        *,
        tenant_id: uuid.UUID | None = None,
    ) -> Artifact:
        """Store ``data`` whole and return its row, not yet recorded (the caller adds it)."""
        artifact_id = uuid.uuid4()
        folder = str(job_id) if job_id else "shared"
        key = f"jobs/{folder}/{artifact_id}{suffix}"
        self.store.put(key, data)
        return Artifact(
            id=artifact_id,
            tenant_id=tenant_id,
            job_id=job_id,
            kind=kind,
            media_type=media_type,
            uri=f"{self.store.scheme}:{key}",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=utcnow(),
        )

    def get(
        self, artifact_id: uuid.UUID, visible: Callable[[Artifact], bool] | None = None
    ) -> Artifact:
        """Return an artifact's row; NotFound if there is none, Gone once retention took it.

        One the caller may not see (``visible`` says no) answers as one that does not exist.
        """
        with self.sessions() as session:
            row = session.get(Artifact, artifact_id)
        if row is None or (visible is not None and not visible(row)):
            raise NotFound("artifact not found")
        if row.expired_at is not None:
            raise Gone(f"artifact expired at {row.expired_at.isoformat()} (retention)")
        return row

    def open(self, row: Artifact) -> BinaryIO:
        """Return a stream of the artifact's bytes, read in chunks; NotFound if it is missing."""
        return self.store.open(self.key_of(row.uri))

    def read_bytes(self, row: Artifact) -> bytes:
        """Return the artifact's bytes (for small files; large ones are streamed with open)."""
        with closing(self.open(row)) as body:
            return body.read()

    def local_copy(self, row: Artifact) -> Path:
        """Return a file on this host with the artifact's bytes, checked against its sha256.

        A folder store's own file is used in place; any other store's goes to the host's cache.
        """
        key = self.key_of(row.uri)
        path = self.store.local_path(key)
        if path is not None:
            if not path.is_file():
                raise NotFound("artifact file is missing")
            return path
        return self.cache.get(
            row.sha256, Path(key).suffix, lambda dest: self.store.download(key, dest)
        )

    def presigned_url(self, row: Artifact) -> str:
        """Return a short-lived URL at which the store itself serves the artifact."""
        return self.store.presign(self.key_of(row.uri), self.presign_ttl_s, row.media_type)

    def delete(self, uri: str) -> None:
        """Delete a stored file by its URI; a missing one, or one in another store, is no error."""
        try:
            key = self.key_of(uri)
        except NotFound:
            return  # written before a move to another store: not this store's to delete
        self.store.delete(key)

    def key_of(self, uri: str) -> str:
        """Return the store key of a URI, refusing one written to a store of another kind."""
        scheme, sep, key = uri.partition(":")
        if not sep or scheme != self.store.scheme:
            raise NotFound("artifact is not in the configured store")
        return key

    # -- a job's private folder (checkpoints) -----------------------------------------------------
    def workdir(self, job_id: uuid.UUID) -> Path:
        """Return the job's local private folder, created if need be."""
        path = workdir_of(self.scratch, job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def push_work(self, job_id: uuid.UUID, names: Sequence[str]) -> None:
        """Store the named files of the job's folder, in order (the one naming the others last)."""
        folder = self.workdir(job_id)
        for name in names:
            self.store.put_file(f"{WORK}/{job_id}/{name}", folder / name)

    def pull_work(self, job_id: uuid.UUID) -> Path:
        """Fetch the job's stored private files into its local folder; return the folder.

        The store holds the latest checkpoint, wherever it was written: its copy wins.
        """
        folder = self.workdir(job_id)
        prefix = f"{WORK}/{job_id}/"
        for obj in self.store.list(prefix):
            name = obj.key.removeprefix(prefix)
            if not name.startswith("."):  # a dot name is another writer's temporary file
                self.store.download(obj.key, folder / name)
        return folder

    def drop_work(self, job_id: uuid.UUID, names: Sequence[str]) -> None:
        """Delete the named files of the job's folder, here and in the store."""
        folder = self.workdir(job_id)
        for name in names:
            self.store.delete(f"{WORK}/{job_id}/{name}")
            (folder / name).unlink(missing_ok=True)

    def discard_work(self, job_id: uuid.UUID) -> None:
        """Delete the job's private files, here and in the store."""
        shutil.rmtree(workdir_of(self.scratch, job_id), ignore_errors=True)
        self.store.delete_prefix(f"{WORK}/{job_id}/")


def workdir_of(scratch: Path, job_id: uuid.UUID | None = None) -> Path:
    """Return the local folder of a job's private files (checkpoints), or the folder of them all."""
    folder = scratch / WORK
    return folder / str(job_id) if job_id else folder


def artifact_url(artifact_id: uuid.UUID) -> str:
    """Return the API path that serves an artifact."""
    return f"/v1/artifacts/{artifact_id}"
