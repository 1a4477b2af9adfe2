"""Validates uploaded training data and converts it to one normalized form, before storing anything.

Text becomes UTF-8 text. Images (a ``.zip`` of PNG/JPEG files, or an ``.npz``) become one
``uint8`` array ``[N, 64, 64, C]`` in an ``.npz`` without pickles. Every size and count is limited,
and archives are read member by member without ever extracting to disk.
"""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from shared.errors import InputError, PayloadTooLarge

STORE_SIZE = 64  # images are stored at the largest supported model size
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Limits:
    """The limits an upload must respect."""

    max_text_chars: int = 20_000_000
    max_images: int = 20_000
    max_members: int = 25_000
    max_uncompressed_bytes: int = 512 * 1024 * 1024
    max_ratio: int = 100  # larger compression ratios are treated as decompression bombs
    max_image_pixels: int = 1024 * 1024


@dataclass(frozen=True)
class Normalized:
    """A validated dataset ready to store."""

    kind: str
    data: bytes
    suffix: str
    media_type: str
    items: int
    meta: dict[str, int | str]


def normalize(filename: str, raw: bytes, limits: Limits) -> Normalized:
    """Validate an upload by its file type and return its normalized form, or raise InputError."""
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix == ".txt":
        return _text(raw, limits)
    if suffix == ".zip":
        return _images(_zip_images(raw, limits), limits)
    if suffix == ".npz":
        return _images(_npz_images(raw, limits), limits)
    raise InputError(
        "upload a .txt (text) or a .zip of PNG/JPEG files or an .npz (images)", field="file"
    )


def _text(raw: bytes, limits: Limits) -> Normalized:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"text must be UTF-8 (bad byte at {exc.start})", field="file") from None
    if not text.strip():
        raise InputError("the text file is empty", field="file")
    if len(text) > limits.max_text_chars:
        raise PayloadTooLarge(f"text is over {limits.max_text_chars} characters", field="file")
    return Normalized(
        "text", text.encode(), ".txt", "text/plain; charset=utf-8", len(text), {"chars": len(text)}
    )


def _check_archive(archive: zipfile.ZipFile, limits: Limits, compressed: int) -> None:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise PayloadTooLarge(f"the archive has over {limits.max_members} entries", field="file")
    total = 0
    for info in infos:
        _check_member(info)
        total += info.file_size
    if total > limits.max_uncompressed_bytes or total > limits.max_ratio * max(compressed, 1):
        raise PayloadTooLarge("the archive expands too much (a decompression bomb?)", field="file")


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or ":" in name or "\x00" in name:
        raise InputError(f"archive entry {name!r} points outside the archive", field="file")
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no type
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise InputError(f"archive entry {name!r} is a link or special file", field="file")


def _open_zip(raw: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError):
        raise InputError("the file is not a readable zip archive", field="file") from None


def _zip_images(raw: bytes, limits: Limits) -> list[np.ndarray]:
    archive = _open_zip(raw)
    _check_archive(archive, limits, len(raw))
    images = []
    for info in archive.infolist():
        if info.is_dir() or PurePosixPath(info.filename).name.startswith("."):
            continue
        if not info.filename.lower().endswith(IMAGE_SUFFIXES):
            raise InputError(f"{info.filename!r} is not a PNG or JPEG file", field="file")
        if len(images) >= limits.max_images:
            raise PayloadTooLarge(f"over {limits.max_images} images", field="file")
        images.append(_decode_image(info.filename, archive.read(info), limits))
    return images


def _decode_image(name: str, data: bytes, limits: Limits) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ("PNG", "JPEG"):
                raise InputError(f"{name!r} is {img.format}, not PNG or JPEG", field="file")
            if img.width * img.height > limits.max_image_pixels:
                raise PayloadTooLarge(
                    f"{name!r} is over {limits.max_image_pixels} pixels", field="file"
                )
            img.load()
            return _to_store(img)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise InputError(f"{name!r} is not a readable image", field="file") from None


def _to_store(img: Image.Image) -> np.ndarray:
    mode = "L" if img.mode in ("1", "L", "LA", "I", "I;16") else "RGB"
    resized = img.convert(mode).resize((STORE_SIZE, STORE_SIZE), Image.Resampling.BILINEAR)
    arr = np.asarray(resized, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _npz_images(raw: bytes, limits: Limits) -> list[np.ndarray]:
    _check_archive(_open_zip(raw), limits, len(raw))
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            key = "images" if "images" in npz.files else (npz.files[0] if npz.files else None)
            if key is None:
                raise InputError("the .npz holds no array", field="file")
            arr = npz[key]
    except ValueError:
        raise InputError(
            "the .npz must hold plain numeric arrays (no pickles)", field="file"
        ) from None
    return [_to_store(Image.fromarray(img)) for img in _npz_to_uint8(arr, limits)]


def _npz_to_uint8(arr: np.ndarray, limits: Limits) -> np.ndarray:
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3):
        raise InputError(
            "images must be shaped [N, H, W], [N, H, W, 1] or [N, H, W, 3]", field="file"
        )
    if len(arr) > limits.max_images or arr.shape[1] * arr.shape[2] > limits.max_image_pixels:
        raise PayloadTooLarge("too many or too large images", field="file")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError("images must be numeric", field="file")
    if arr.dtype == np.uint8:
        return arr
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if lo < -1.0 or hi > 255.0 or not np.isfinite([lo, hi]).all():
        raise InputError("image values must lie in [0, 255], [0, 1] or [-1, 1]", field="file")
    scaled = (arr + 1) * 127.5 if lo < 0 else (arr * 255.0 if hi <= 1.0 else arr)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _images(images: list[np.ndarray], limits: Limits) -> Normalized:
    if len(images) < 1:
        raise InputError("the upload holds no images", field="file")
    channels = 3 if any(img.shape[-1] == 3 for img in images) else 1
    stack = np.stack([np.repeat(i, 3, -1) if i.shape[-1] != channels else i for i in images])
    buf = io.BytesIO()
    np.savez_compressed(buf, images=stack)
    return Normalized(
        "image",
        buf.getvalue(),
        ".npz",
        "application/x-npz",
        len(images),
        {"images": len(images), "channels": channels, "size": STORE_SIZE},
    )
