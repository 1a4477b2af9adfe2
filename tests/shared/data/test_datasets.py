"""Upload validation: every hostile archive is refused before anything is stored."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from shared.data.datasets import Limits, normalize
from shared.errors import InputError, PayloadTooLarge


def png(size: int = 12, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), color=128 if mode == "L" else (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_text_is_normalized() -> None:
    data = normalize("corpus.txt", "héllo world\n".encode(), Limits())
    assert data.kind == "text" and data.items == 12 and data.data.decode() == "héllo world\n"


def test_zip_of_images_is_normalized() -> None:
    data = normalize("digits.zip", make_zip({"a/1.png": png(), "a/2.png": png(20)}), Limits())
    with np.load(io.BytesIO(data.data), allow_pickle=False) as f:
        assert f["images"].shape == (2, 64, 64, 1) and f["images"].dtype == np.uint8
    assert data.meta["channels"] == 1


def test_npz_in_minus_one_to_one_is_normalized() -> None:
    arr = np.linspace(-1, 1, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    data = normalize("x.npz", npz(images=arr), Limits())
    with np.load(io.BytesIO(data.data), allow_pickle=False) as f:
        images = f["images"]
    assert images.shape == (4, 64, 64, 1) and images.min() == 0 and images.max() == 255


@pytest.mark.parametrize(
    "name, raw, error",
    [
        ("evil.zip", make_zip({"../../escape.png": png()}), InputError),
        ("evil.zip", make_zip({"/abs/path.png": png()}), InputError),
        ("evil.zip", make_zip({"ok.png": png()}, links=("link.png",)), InputError),
        ("bomb.zip", make_zip({"big.png": b"\0" * (20 * 1024 * 1024)}), PayloadTooLarge),
        ("junk.zip", make_zip({"fake.png": b"not an image at all"}), InputError),
        ("gif.zip", make_zip({"anim.png": b"GIF89a" + b"\0" * 64}), InputError),
        ("notes.zip", make_zip({"readme.md": b"hi"}), InputError),
        ("empty.zip", make_zip({}), InputError),
        ("broken.zip", b"PK\x03\x04 truncated", InputError),
        ("latin1.txt", "café".encode("latin-1"), InputError),
        ("blank.txt", b"   \n", InputError),
        ("run.exe", b"MZ", InputError),
        ("pickle.npz", npz(images=np.array([object()], dtype=object)), InputError),
        ("shape.npz", npz(images=np.zeros((2, 8, 8, 5))), InputError),
        ("range.npz", npz(images=np.full((2, 8, 8), 900.0)), InputError),
    ],
)
def test_hostile_uploads_are_refused(name: str, raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        normalize(name, raw, Limits())
    assert caught.value.field == "file"


def test_counts_are_limited() -> None:
    raw = make_zip({f"{i}.png": png() for i in range(5)})
    with pytest.raises(PayloadTooLarge):
        normalize("many.zip", raw, Limits(max_images=4))
    with pytest.raises(PayloadTooLarge):
        normalize("many.zip", raw, Limits(max_members=4))
    with pytest.raises(PayloadTooLarge):
        normalize("long.txt", b"x" * 100, Limits(max_text_chars=99))


# -- archives that lie, and degenerate data: refused with a 4xx error, never a crash -----------
# Offsets of header fields in a zip's central directory entry and in the member's local header.
CENTRAL = {"flags": 8, "method": 10, "compress_size": 20, "file_size": 24}
LOCAL = {"flags": 6, "method": 8, "compress_size": 18, "file_size": 22}


def patched(raw: bytes, **fields: int) -> bytes:
    """Return a one-member zip with header fields overwritten in both of the member's headers."""
    out = bytearray(raw)
    central, local = out.find(b"PK\x01\x02"), out.find(b"PK\x03\x04")
    for name, value in fields.items():
        fmt = "<H" if name in ("flags", "method") else "<I"
        struct.pack_into(fmt, out, central + CENTRAL[name], value)
        struct.pack_into(fmt, out, local + LOCAL[name], value)
    return bytes(out)


def _member_data(raw: bytes) -> tuple[int, int]:
    """Return where the data of a one-member zip starts and ends."""
    local = raw.find(b"PK\x03\x04")
    name_length, extra_length = struct.unpack_from("<HH", raw, local + 26)
    return local + 30 + name_length + extra_length, raw.find(b"PK\x01\x02")


def corrupted(raw: bytes) -> bytes:
    """Return a one-member zip whose compressed data is overwritten in the middle."""
    start, end = _member_data(raw)
    middle = (start + end) // 2
    return raw[: middle - 8] + b"\xff" * 16 + raw[middle + 8 :]


def truncated(raw: bytes) -> bytes:
    """Return a one-member zip cut in the middle of its data, its central directory intact."""
    start, end = _member_data(raw)
    return raw[: (start + end) // 2] + raw[end:]


def npy(header: str, data: bytes = b"") -> bytes:
    """Return an .npy file (format 1.0) with a hand-written header."""
    text = header.encode("latin1")
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def npy_of(arr: np.ndarray) -> bytes:
    """Return ``arr`` as an .npy file."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """Return a PNG declaring ``width`` x ``height`` pixels, its pixel data one empty stream."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def npy_header(shape: str, descr: str = "|u1") -> str:
    """Return an .npy header declaring ``shape`` (as Python source) and ``descr``."""
    return f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"


def noise_png(size: int) -> bytes:
    """Return a PNG of noise, which deflate cannot shrink (so its header sizes can lie)."""
    buf = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


ONE_PNG = make_zip({"a.png": noise_png(64)})


@pytest.mark.parametrize(
    "name, raw, error",
    [
        ("small.zip", patched(ONE_PNG, file_size=100), InputError),  # header says small, data big
        ("big.zip", patched(ONE_PNG, file_size=2**31), PayloadTooLarge),  # header says big
        ("encrypted.zip", patched(ONE_PNG, flags=0x1), InputError),
        ("aes.zip", patched(ONE_PNG, method=99), InputError),
        ("bzip2.zip", patched(ONE_PNG, method=zipfile.ZIP_BZIP2), InputError),
        ("corrupt.zip", corrupted(ONE_PNG), InputError),
        ("truncated.zip", truncated(ONE_PNG), InputError),
        (
            "extra.npz",
            make_zip({"images.npy": npy_of(np.zeros((2, 8, 8))), "x.txt": b""}),
            InputError,
        ),
        ("complex.npz", npz(images=np.zeros((2, 8, 8), np.complex64)), InputError),
        ("bool.npz", npz(images=np.ones((2, 8, 8), bool)), InputError),
        ("text.npz", npz(images=np.full((2, 8, 8), "x")), InputError),
        ("empty.npz", npz(images=np.zeros((2, 0, 0), np.uint8)), InputError),
        ("none.npz", npz(images=np.zeros((0, 8, 8), np.uint8)), InputError),
        ("nan.npz", npz(images=np.full((2, 8, 8), np.nan, np.float32)), InputError),
        ("inf.npz", npz(images=np.full((2, 8, 8), np.inf)), InputError),
        (
            "huge.npz",
            make_zip({"images.npy": npy(npy_header("(1000000000000, 8, 8)"))}),
            PayloadTooLarge,
        ),
        (
            "wide.npz",
            make_zip({"images.npy": npy(npy_header("(1, 4294967296, 4294967296)"))}),
            PayloadTooLarge,
        ),
        ("negative.npz", make_zip({"images.npy": npy(npy_header("(-1, 8, 8)"))}), InputError),
        (
            "short.npz",
            make_zip({"images.npy": npy(npy_header("(2, 8, 8)"), b"x" * 100)}),
            InputError,
        ),
        ("record.npz", make_zip({"images.npy": npy(npy_header("(2, 8, 8)", "V8"))}), InputError),
        ("comma.npz", make_zip({"images.npy": npy(npy_header("(2, 8, 8)", ","))}), InputError),
        ("unnamed.zip", make_zip({"a.png": png()}).replace(b"a.png", b"\0.png"), InputError),
        ("zero.zip", make_zip({"a.png": png_header(0, 0)}), InputError),
        ("wide.zip", make_zip({"a.png": png_header(2**20, 2**20)}), PayloadTooLarge),
    ],
)
def test_lying_archives_and_degenerate_data_are_refused(
    name: str, raw: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        normalize(name, raw, Limits())
    assert caught.value.field == "file"


def test_pixels_are_counted_from_headers_before_any_is_decoded() -> None:
    # The second image's pixel data is cut short: decoding it first would raise "not readable".
    whole = png(16)
    cut = whole[: whole.find(b"IDAT") + 6]
    raw = make_zip({"a.png": png(16), "b.png": cut})
    with pytest.raises(PayloadTooLarge, match="pixels"):
        normalize("big.zip", raw, Limits(max_total_pixels=16 * 16 * 2 - 1))
    with pytest.raises(InputError, match="not a readable image"):
        normalize("big.zip", raw, Limits())


def test_many_large_images_cost_a_refusal_not_a_decode() -> None:
    raw = make_zip({f"{i}.png": png(1024) for i in range(300)})  # 314 M pixels, a few hundred KB
    with pytest.raises(PayloadTooLarge, match="pixels"):
        normalize("big.zip", raw, Limits())


def test_an_array_larger_than_its_archive_allows_is_refused_before_it_is_read() -> None:
    # 1 MB of pixels declared by a header of a few hundred bytes: over 100 times the upload.
    raw = make_zip({"images.npy": npy(npy_header("(1000, 32, 32)"))})
    with pytest.raises(PayloadTooLarge, match="expands too much"):
        normalize("bomb.npz", raw, Limits())


@pytest.mark.parametrize(
    "arr",
    [
        np.asfortranarray(np.random.default_rng(0).random((3, 8, 8))),
        np.random.default_rng(0).random((3, 8, 8)).astype(">f8"),
        np.full((2, 8, 8), 0.5, np.float16),
        np.array([[[-1, 0], [1, 1]]], np.int8),
        np.zeros((2, 8, 8, 3), np.uint8),
        np.zeros((2, 8, 8, 1), np.int64),
    ],
)
def test_numeric_arrays_of_any_layout_are_normalized(arr: np.ndarray) -> None:
    data = normalize("x.npz", npz(images=arr), Limits())
    with np.load(io.BytesIO(data.data), allow_pickle=False) as f:
        assert f["images"].shape[:3] == (len(arr), 64, 64) and f["images"].dtype == np.uint8
