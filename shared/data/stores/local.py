"""The folder store: objects are files under one root, written via a temporary file and a rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from shared.data.stores import StoredObject
from shared.errors import NotFound


class LocalStore:
    """Keeps objects as files under ``root``; a key never reaches outside it."""

    scheme = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Return the file of a key, refusing any key that resolves outside the root."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise NotFound("artifact path is outside the store")
        return path

    def put(self, key: str, data: bytes) -> None:
        """Write the file atomically."""
        write_atomic(self.path(key), data)

    def put_file(self, key: str, path: Path) -> None:
        """Copy a local file in atomically (nothing to do when it is the object's own file)."""
        _copy_atomic(path, self.path(key))

    def open(self, key: str) -> BinaryIO:
        """Return the open file; NotFound if it is missing."""
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFound("artifact file is missing") from exc

    def download(self, key: str, dest: Path) -> None:
        """Copy the file out atomically; NotFound if it is missing."""
        src = self.path(key)
        if not src.is_file():
            raise NotFound("artifact file is missing")
        _copy_atomic(src, dest)

    def delete(self, key: str) -> None:
        """Remove the file if it exists."""
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """Remove the folder ``prefix`` names, with everything in it."""
        shutil.rmtree(self.path(prefix), ignore_errors=True)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Yield the files under the folder ``prefix`` names (temporary files included)."""
        top = self.path(prefix)
        for folder, _, names in os.walk(top):
            for name in names:
                path = Path(folder) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:  # removed while we walked: nothing to list
                    continue
                key = path.relative_to(self.root).as_posix()
                yield StoredObject(key, stat.st_mtime, stat.st_size)

    def presign(self, key: str, ttl_s: int, media_type: str) -> str:
        """Refuse: a folder has no URL of its own (settings allow redirects only with S3)."""
        raise NotImplementedError("a folder store cannot presign; serve its files by streaming")

    def local_path(self, key: str) -> Path | None:
        """Return the object's file."""
        return self.path(key)


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


def _copy_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` via a temporary sibling and a rename; a file onto itself: no-op."""
    if src.resolve() == dest.resolve():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
