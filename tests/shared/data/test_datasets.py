"""Upload validation: every hostile archive is refused before anything is stored."""

from __future__ import annotations

import io
import stat
import zipfile

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
