"""Atomic, checksummed saving and verified loading of Keras models."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import keras

from shared.data.stores.cache import sha256_file


class ModelIntegrityError(ValueError):
    """Raised when a model file's sha256 differs from the recorded one."""


def save_model(model: keras.Model, path: str | os.PathLike) -> str:
    """Write model to path (.keras) via a same-directory temp file and rename; return sha256."""
    target = Path(path)
    if target.suffix != ".keras":
        raise ValueError(f"model path must end in .keras, got {target.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so the final rename is atomic and readers never see a partial file.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=".tmp.keras", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return digest


def _fsync_dir(directory: Path) -> None:
    """Flush a directory entry so a completed rename survives a crash (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)


def load_model_verified(path: str | os.PathLike, expected_sha256: str) -> keras.Model:
    """Load a .keras model (safe mode, uncompiled) after checking its sha256."""
    actual = sha256_file(path)
    if actual != expected_sha256.lower():
        raise ModelIntegrityError(
            f"sha256 mismatch for {os.fspath(path)}: expected {expected_sha256}, got {actual}"
        )
    return keras.saving.load_model(path, compile=False)
