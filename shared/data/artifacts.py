"""Stores job output files on disk and records them in the ``artifacts`` table."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from shared.db import utcnow
from shared.errors import Gone, NotFound
from shared.tables import Artifact

URI_PREFIX = "local:"


class ArtifactStore:
    """Writes files under one root folder; they are served by artifact id, never by path."""

    def __init__(self, root: Path, sessions: sessionmaker[Session]) -> None:
        self.root = root.resolve()
        self.sessions = sessions

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
        """Write ``data`` atomically and record it as the tenant's; return the artifact row."""
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
        """Write ``data`` atomically and return its row, not yet recorded (the caller adds it)."""
        artifact_id = uuid.uuid4()
        folder = str(job_id) if job_id else "shared"
        rel = Path("jobs") / folder / f"{artifact_id}{suffix}"
        write_atomic(self.root / rel, data)
        return Artifact(
            id=artifact_id,
            tenant_id=tenant_id,
            job_id=job_id,
            kind=kind,
            media_type=media_type,
            uri=URI_PREFIX + rel.as_posix(),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=utcnow(),
        )

    def get(
        self, artifact_id: uuid.UUID, visible: Callable[[Artifact], bool] | None = None
    ) -> tuple[Artifact, Path]:
        """Return an artifact's row and the path of its file; NotFound if either is missing.

        One the caller may not see (``visible`` says no) answers as one that does not exist.
        """
        with self.sessions() as session:
            row = session.get(Artifact, artifact_id)
        if row is None or (visible is not None and not visible(row)):
            raise NotFound("artifact not found")
        if row.expired_at is not None:
            raise Gone(f"artifact expired at {row.expired_at.isoformat()} (retention)")
        path = self.path_of(row.uri)
        if not path.is_file():
            raise NotFound("artifact file is missing")
        return row, path

    def path_of(self, uri: str) -> Path:
        """Resolve a stored URI to a path inside the root, refusing anything outside it."""
        if not uri.startswith(URI_PREFIX):
            raise NotFound("artifact is not stored locally")
        path = (self.root / uri.removeprefix(URI_PREFIX)).resolve()
        if not path.is_relative_to(self.root):
            raise NotFound("artifact path is outside the store")
        return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file via a temporary sibling and a rename, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def workdir_of(artifact_dir: Path, job_id: uuid.UUID | None = None) -> Path:
    """Return the folder of a job's private files (checkpoints), or the folder of them all."""
    folder = artifact_dir / "work"
    return folder / str(job_id) if job_id else folder


def artifact_url(artifact_id: uuid.UUID) -> str:
    """Return the API path that serves an artifact."""
    return f"/v1/artifacts/{artifact_id}"
