"""Validates uploaded training data and converts it to one normalized form, before storing anything.

Text becomes UTF-8 text. Images (a ``.zip`` of PNG/JPEG files, or an ``.npz``) become one
``uint8`` array ``[N, 64, 64, C]`` in an ``.npz`` without pickles. Every size and count is limited,
and archives are read member by member without ever extracting to disk.

Nothing an archive declares is trusted: member sizes are enforced on the bytes actually read,
image sizes are summed from their headers before any pixel is decoded, and an ``.npy`` header's
shape and dtype are checked before its data is read. Whatever a corrupt or hostile upload raises
becomes an InputError (or PayloadTooLarge) on the field ``file``.
"""

from __future__ import annotations

import io
import math
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from PIL import Image

from shared.errors import InputError, PayloadTooLarge
from shared.models import kinds

STORE_SIZE = 64  # images are stored at the largest supported model size
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Stored and deflate only: images are compressed already, and zipfile inflates bzip2 and LZMA
# members in one unbounded call, so their size could not be capped while reading.
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# Every central-directory entry starts with this signature.
CENTRAL_ENTRY = b"PK\x01\x02"
# Integers and floats; bool, complex, object, text, records and dates are not pixel values.
IMAGE_DTYPE_KINDS = "uif"
# What zipfile, zlib and numpy raise on corrupt archives: RuntimeError for an encrypted member,
# NotImplementedError for an unknown method, EOFError and struct.error for truncated headers,
# SyntaxError for an .npy dtype such as "," (numpy parses some with ast.literal_eval).
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    SyntaxError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    EOFError,
    ValueError,
    OSError,
    struct.error,
)
# What Pillow raises on corrupt images (its plugins raise SyntaxError for malformed chunks).
IMAGE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
)


@dataclass(frozen=True)
class Limits:
    """The limits an upload must respect."""

    max_text_chars: int = 20_000_000
    max_images: int = 20_000
    max_members: int = 25_000
    max_uncompressed_bytes: int = 512 * 1024 * 1024
    max_ratio: int = 100  # larger compression ratios are treated as decompression bombs
    max_image_pixels: int = 1024 * 1024  # per image
    # Decode cost: pixels summed over every image of one upload, from headers, before decoding.
    # Decoding and resizing measured 4-20 ns per pixel (grey to RGB PNG), so 100 M pixels cost at
    # most about 2 s of API CPU, and max_images images of the stored 64x64 (82 M) still fit.
    max_total_pixels: int = 100_000_000


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
    """Validate an upload by its file type and return its normalized form, or raise InputError.

    The model kinds (shared.models.kinds) say which suffixes they take, and who normalizes each.
    """
    suffix = PurePosixPath(filename.lower()).suffix
    accepted = {
        s: (kind.name, path) for kind in kinds.all_kinds() for s, path in kind.datasets.items()
    }
    if suffix not in accepted:
        known = ", ".join(f"{s} ({kind})" for s, (kind, _) in accepted.items())
        raise InputError(f"upload one of: {known}", field="file")
    kind, path = accepted[suffix]
    return kinds.resolve(path)(raw, limits, kind)


def normalize_text(raw: bytes, limits: Limits, kind: str) -> Normalized:
    """Return UTF-8 text, non-empty and within the limits, as a dataset of ``kind``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"text must be UTF-8 (bad byte at {exc.start})", field="file") from None
    if not text.strip():
        raise InputError("the text file is empty", field="file")
    if len(text) > limits.max_text_chars:
        raise PayloadTooLarge(f"text is over {limits.max_text_chars} characters", field="file")
    return Normalized(
        kind, text.encode(), ".txt", "text/plain; charset=utf-8", len(text), {"chars": len(text)}
    )


def normalize_zip_images(raw: bytes, limits: Limits, kind: str) -> Normalized:
    """Return the images of a .zip of PNG/JPEG files as one stored array of ``kind``."""
    return _images(_zip_images(raw, limits), limits, kind)


def normalize_npz_images(raw: bytes, limits: Limits, kind: str) -> Normalized:
    """Return the images of an .npz as one stored array of ``kind``."""
    return _images(_npz_images(raw, limits), limits, kind)


# -- archives ----------------------------------------------------------------------------------
@contextmanager
def _readable(what: str) -> Iterator[None]:
    """Turn whatever a corrupt archive raises while being read into an InputError on ``file``."""
    try:
        yield
    except ARCHIVE_ERRORS:
        raise InputError(f"{what} is corrupt or cannot be read", field="file") from None


def _open_zip(raw: bytes, limits: Limits) -> zipfile.ZipFile:
    # zipfile parses the whole central directory before anything can be counted, about 5 us and
    # 500 bytes per entry: count the entries' signatures first (a few ms for the largest upload).
    if raw.count(CENTRAL_ENTRY) > limits.max_members:
        raise PayloadTooLarge(f"the archive has over {limits.max_members} entries", field="file")
    with _readable("the zip archive"):
        archive = zipfile.ZipFile(io.BytesIO(raw))
    _check_archive(archive, limits, len(raw))
    return archive


def _check_archive(archive: zipfile.ZipFile, limits: Limits, compressed: int) -> None:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise PayloadTooLarge(f"the archive has over {limits.max_members} entries", field="file")
    for info in infos:
        _check_member(info)
    # Declared sizes may lie (reads are capped again on the real bytes); this refuses honest bombs
    # before anything is inflated.
    _Budget(limits, compressed).take(sum(info.file_size for info in infos))


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    if not name:  # zipfile cuts names at NUL; an empty one breaks ZipInfo.is_dir()
        raise InputError("an archive entry has no name", field="file")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or ":" in name:  # zipfile cuts names at NUL
        raise InputError(f"archive entry {name!r} points outside the archive", field="file")
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no type
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise InputError(f"archive entry {name!r} is a link or special file", field="file")
    if info.flag_bits & 0x1:
        raise InputError(f"archive entry {name!r} is encrypted", field="file")
    if info.compress_type not in ZIP_METHODS:
        raise InputError(
            f"archive entry {name!r} uses compression method {info.compress_type}; "
            "use stored or deflate",
            field="file",
        )


class _Budget:
    """The bytes an archive may still inflate to, counted on what is actually read."""

    def __init__(self, limits: Limits, compressed: int) -> None:
        self.left = min(limits.max_uncompressed_bytes, limits.max_ratio * max(compressed, 1))

    def take(self, size: int) -> None:
        """Spend ``size`` bytes, or raise PayloadTooLarge when the archive would expand too much."""
        if size > self.left:
            raise PayloadTooLarge(
                "the archive expands too much (a decompression bomb?)", field="file"
            )
        self.left -= size

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        """Return a member's bytes, reading no more than the budget allows, whatever it declares."""
        with _readable(repr(info.filename)), archive.open(info) as member:
            data = member.read(self.left + 1)
        self.take(len(data))
        return data


# -- a zip of PNG/JPEG files -------------------------------------------------------------------
def _zip_images(raw: bytes, limits: Limits) -> list[np.ndarray]:
    archive = _open_zip(raw, limits)
    budget = _Budget(limits, len(raw))
    files = [
        (info.filename, budget.read(archive, info)) for info in _image_members(archive, limits)
    ]
    total = sum(_pixels(name, data, limits) for name, data in files)
    if total > limits.max_total_pixels:
        raise PayloadTooLarge(
            f"the images hold {total} pixels, over {limits.max_total_pixels}", field="file"
        )
    return [_decode_image(name, data) for name, data in files]


def _image_members(archive: zipfile.ZipFile, limits: Limits) -> list[zipfile.ZipInfo]:
    members = [
        info
        for info in archive.infolist()
        if not info.is_dir() and not PurePosixPath(info.filename).name.startswith(".")
    ]
    for info in members:
        if not info.filename.lower().endswith(IMAGE_SUFFIXES):
            raise InputError(f"{info.filename!r} is not a PNG or JPEG file", field="file")
    if len(members) > limits.max_images:
        raise PayloadTooLarge(f"over {limits.max_images} images", field="file")
    return members


@contextmanager
def _image(name: str, data: bytes) -> Iterator[Image.Image]:
    """Open an image lazily; whatever a corrupt one raises, opened or decoded, is an InputError."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            yield img
    except Image.DecompressionBombError:  # Pillow's own limit, far above max_image_pixels
        raise PayloadTooLarge(f"{name!r} has too many pixels", field="file") from None
    except IMAGE_ERRORS:
        raise InputError(f"{name!r} is not a readable image", field="file") from None


def _pixels(name: str, data: bytes, limits: Limits) -> int:
    """Return an image's pixel count from its header alone."""
    with _image(name, data) as img:
        if img.format not in ("PNG", "JPEG"):
            raise InputError(f"{name!r} is {img.format}, not PNG or JPEG", field="file")
        if img.width < 1 or img.height < 1:  # Pillow 13 refuses these at open; older ones may not
            raise InputError(f"{name!r} has no pixels", field="file")
        if img.width * img.height > limits.max_image_pixels:
            raise PayloadTooLarge(
                f"{name!r} is over {limits.max_image_pixels} pixels", field="file"
            )
        return img.width * img.height


def _decode_image(name: str, data: bytes) -> np.ndarray:
    with _image(name, data) as img:
        return _to_store(img)


def _to_store(img: Image.Image) -> np.ndarray:
    mode = "L" if img.mode in ("1", "L", "LA", "I", "I;16") else "RGB"
    resized = img.convert(mode).resize((STORE_SIZE, STORE_SIZE), Image.Resampling.BILINEAR)
    arr = np.asarray(resized, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


# -- an .npz of one image array ----------------------------------------------------------------
def _npz_images(raw: bytes, limits: Limits) -> list[np.ndarray]:
    archive = _open_zip(raw, limits)
    members = [info for info in archive.infolist() if not info.is_dir()]
    for info in members:
        if not info.filename.endswith(".npy"):
            raise InputError(f"{info.filename!r} in the .npz is not an .npy array", field="file")
    if not members:
        raise InputError("the .npz holds no array", field="file")
    chosen = next((info for info in members if info.filename == "images.npy"), members[0])
    arr = _read_npy(archive, chosen, limits, _Budget(limits, len(raw)))
    return [_to_store(Image.fromarray(img)) for img in _to_uint8(arr)]


def _read_npy(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, budget: _Budget
) -> np.ndarray:
    """Read one ``.npy`` member, checking its header's shape and dtype before reading its data."""
    with _readable(repr(info.filename)), archive.open(info) as member:
        shape, fortran_order, dtype = _npy_header(member)
        _check_array(shape, dtype, limits)
        size = math.prod(shape) * dtype.itemsize
        budget.take(size)
        data = member.read(size)
    if len(data) < size:
        raise InputError(f"{info.filename!r} is truncated", field="file")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")


def _npy_header(member: io.BufferedIOBase) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    raise InputError(f"the .npy format version {version} is not supported", field="file")


def _check_array(shape: tuple[int, ...], dtype: np.dtype, limits: Limits) -> None:
    """Refuse degenerate or oversized image arrays from their header, before reading the data."""
    if len(shape) == 4 and shape[-1] in (1, 3):
        shape = shape[:3]
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(
            "images must be shaped [N, H, W], [N, H, W, 1] or [N, H, W, 3], none of them 0",
            field="file",
        )
    if dtype.kind not in IMAGE_DTYPE_KINDS:
        raise InputError(f"images must be integers or floats, not {dtype}", field="file")
    count, height, width = shape
    if count > limits.max_images or height * width > limits.max_image_pixels:
        raise PayloadTooLarge("too many or too large images", field="file")
    if count * height * width > limits.max_total_pixels:
        raise PayloadTooLarge(
            f"the images hold over {limits.max_total_pixels} pixels", field="file"
        )


def _to_uint8(arr: np.ndarray) -> Iterator[np.ndarray]:
    """Yield each image as uint8 [H, W] or [H, W, 3], scaled from [0, 255], [0, 1] or [-1, 1]."""
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint8:
        yield from arr
        return
    lo, hi = float(arr.min()), float(arr.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -1.0 or hi > 255.0:
        raise InputError(
            "image values must be finite and lie in [0, 255], [0, 1] or [-1, 1]", field="file"
        )
    offset, scale = (1.0, 127.5) if lo < 0 else (0.0, 255.0 if hi <= 1.0 else 1.0)
    for img in arr:  # one image at a time in float32, never the whole array in float64
        yield np.clip(np.rint((img.astype(np.float32) + offset) * scale), 0, 255).astype(np.uint8)


def _images(images: list[np.ndarray], limits: Limits, kind: str) -> Normalized:
    if len(images) < 1:
        raise InputError("the upload holds no images", field="file")
    channels = 3 if any(img.shape[-1] == 3 for img in images) else 1
    stack = np.stack([np.repeat(i, 3, -1) if i.shape[-1] != channels else i for i in images])
    buf = io.BytesIO()
    np.savez_compressed(buf, images=stack)
    return Normalized(
        kind,
        buf.getvalue(),
        ".npz",
        "application/x-npz",
        len(images),
        {"images": len(images), "channels": channels, "size": STORE_SIZE},
    )
