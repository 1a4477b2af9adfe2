"""Fuzzing the upload parser: ``normalize`` returns a valid dataset or refuses it, whatever it gets.

Refusing means InputError (PayloadTooLarge is one) on the field ``file``; anything else would be a
500 from the API. The inputs are structured to get past the first checks: valid archives with
bytes changed, zips of random members, methods and header fields, arrays of every dtype and shape,
and ``.npy`` headers written by hand.
"""

from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from shared.data.datasets import STORE_SIZE, Limits, Normalized, normalize
from shared.errors import InputError
from tests.shared.data.test_datasets import make_zip, npy, npy_of, npz, patched, png

FUZZ = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NAMES = st.sampled_from(["data.zip", "data.npz", "data.txt", "data.png", "data"])
METHODS = st.sampled_from(
    [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
SIGNATURES = (b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY", b"IHDR", b"IDAT")


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(9 * 7 * 3, dtype=np.uint8).reshape(9, 7, 3)).save(buf, "JPEG")
    return buf.getvalue()


# Valid uploads, each normalized without error before any byte of it is changed.
VALID = [
    ("pngs.zip", make_zip({"a/1.png": png(12), "a/2.png": png(9, "RGB")})),
    ("photo.zip", make_zip({"photo.jpg": jpeg()})),
    ("floats.npz", npz(images=np.linspace(-1, 1, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8))),
    ("rgb.npz", make_zip({"images.npy": npy_of(np.zeros((2, 5, 5, 3), np.uint8))})),
]


def check(filename: str, raw: bytes) -> None:
    """Assert that ``normalize`` either refuses the upload properly or returns a valid dataset."""
    try:
        data = normalize(filename, raw, Limits())
    except InputError as exc:
        assert exc.field == "file"
        return
    assert_valid(data)


def assert_valid(data: Normalized) -> None:
    assert data.items >= 1
    if data.kind == "text":
        assert data.data.decode("utf-8").strip()
        return
    assert data.kind == "image"
    with np.load(io.BytesIO(data.data), allow_pickle=False) as stored:
        images = stored["images"]
    assert images.dtype == np.uint8
    assert images.shape[:3] == (data.items, STORE_SIZE, STORE_SIZE) and images.shape[3] in (1, 3)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid upload with some bytes changed (mostly in headers) and perhaps cut short."""
    name, valid = draw(st.sampled_from(VALID))
    raw = bytearray(valid)
    headers = [i for sig in SIGNATURES for i in range(len(raw)) if raw.startswith(sig, i)]
    for _ in range(draw(st.integers(1, 6))):
        near_header = st.sampled_from(headers).flatmap(lambda i: st.integers(i, i + 46))
        position = draw(st.one_of(st.integers(0, len(raw) - 1), near_header)) % len(raw)
        raw[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return name, bytes(raw)


@st.composite
def random_zips(draw: st.DrawFn) -> tuple[str, bytes]:
    """A zip of random members, names and methods; perhaps its first member's headers forged."""
    buf = io.BytesIO()
    content = st.one_of(
        st.binary(max_size=300), st.sampled_from([png(), jpeg(), npy_of(np.ones(3))])
    )
    names = st.one_of(
        st.text(min_size=1, max_size=12).filter(lambda n: not n.startswith("\x00")),
        st.sampled_from(["images.npy", "a.png"]),
    )
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate names are part of the point
        for _ in range(draw(st.integers(0, 4))):
            archive.writestr(draw(names), draw(content), compress_type=draw(METHODS))
    raw = buf.getvalue()
    if b"PK\x01\x02" in raw and draw(st.booleans()):
        fields = st.fixed_dictionaries(
            {},
            optional={
                "flags": st.integers(0, 0xFFFF),
                "method": st.integers(0, 0xFFFF),
                "compress_size": st.integers(0, 2**32 - 1),
                "file_size": st.integers(0, 2**32 - 1),
            },
        )
        raw = patched(raw, **draw(fields))
    return draw(st.sampled_from(["data.zip", "data.npz"])), raw


@st.composite
def npy_headers(draw: st.DrawFn) -> bytes:
    """A one-array .npz whose .npy header is written by hand, then random data."""
    descr = draw(
        st.one_of(
            st.sampled_from(
                ["|u1", "<i2", ">f8", "<f2", "|b1", "<c8", "|O", "<U3", "|V4", "<M8[s]"]
            ),
            st.text(st.characters(max_codepoint=255), max_size=8),  # .npy headers are latin-1
        )
    )
    shape = tuple(draw(st.lists(st.integers(-2, 2**63), max_size=5)))
    fortran = draw(st.booleans())
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    return make_zip({"images.npy": npy(header, draw(st.binary(max_size=2000)))})


@FUZZ
@given(name=NAMES, raw=st.binary(max_size=2000))
def test_random_bytes(name: str, raw: bytes) -> None:
    check(name, raw)


@FUZZ
@given(upload=mutated())
def test_valid_uploads_with_bytes_changed(upload: tuple[str, bytes]) -> None:
    check(*upload)


@FUZZ
@given(upload=random_zips())
def test_zips_of_random_members_methods_and_headers(upload: tuple[str, bytes]) -> None:
    check(*upload)


@FUZZ
@given(
    arr=hnp.arrays(
        dtype=st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(), hnp.unicode_string_dtypes()),
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6),
    )
)
def test_npz_of_any_dtype_and_shape(arr: np.ndarray) -> None:
    check("data.npz", npz(images=arr))


@FUZZ
@given(raw=npy_headers())
def test_npz_with_forged_headers(raw: bytes) -> None:
    check("data.npz", raw)


def test_the_valid_uploads_are_valid() -> None:
    for name, raw in VALID:
        assert_valid(normalize(name, raw, Limits()))
