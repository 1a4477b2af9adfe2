"""Local copies of stored files that must be files on this host (Keras loads models by path).

A copy is named by its content's sha256, checked when it arrives, and renamed into place whole,
so the processes of one host share the folder safely and a copy never changes once there. The
folder is bounded: past its size, the copies used longest ago go first.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from shared.errors import StorageUnavailable

CHUNK_BYTES = 1 << 20
# A copy used this recently is never trimmed: another process may be about to open it.
IN_USE_S = 300.0


class FileCache:
    """A folder of verified copies, named ``<sha256><suffix>``, at most ``max_bytes`` in all."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    def get(self, sha256: str, suffix: str, fetch: Callable[[Path], None]) -> Path:
        """Return the copy of the file with this checksum, fetching it with ``fetch`` if absent."""
        path = self.folder / f"{sha256}{suffix}"
        if path.is_file():
            os.utime(path)  # the last use orders the trimming
            return path
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".tmp-{uuid.uuid4().hex}"
        try:
            fetch(tmp)
            if sha256_file(tmp) != sha256:
                raise StorageUnavailable(f"a stored file does not match its checksum {sha256}")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self._trim(keep=path)
        return path

    def _trim(self, keep: Path) -> None:
        """Remove the least recently used copies until the folder fits its bound."""
        entries = []
        for path in self.folder.iterdir():
            try:
                entries.append((path.stat().st_mtime, path.stat().st_size, path))
            except FileNotFoundError:  # another process trimmed it first
                continue
        total = sum(size for _, size, _ in entries)
        recent = time.time() - IN_USE_S
        for mtime, size, path in sorted(entries):
            if total <= self.max_bytes or mtime > recent:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
