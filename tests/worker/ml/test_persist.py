"""Checksummed saving, verified loading and reproducibility in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.models.presets import IMAGE_PRESETS
from worker.ml.image import build_generator, generate_images
from worker.ml.persist import ModelIntegrityError, load_model_verified, save_model, sha256_file

pytestmark = pytest.mark.ml
REPO = Path(__file__).resolve().parents[3]

FRESH_SCRIPT = """
import json, sys
from worker.ml.image import generate_images
from worker.ml.persist import load_model_verified
from worker.ml.text import TextGenerator
from shared.models.tokenizers import Tokenizer
args = json.loads(sys.argv[1])
model = load_model_verified(args["text"], args["text_sha"])
tok = Tokenizer.from_json(args["tokenizer"])
out = TextGenerator(model, tok).generate_text("The ", 30, 0.8, 5, 9)
images = generate_images(load_model_verified(args["image"], args["image_sha"]), 3, 5)
print(json.dumps({"text": out["text"], "pixels": images.ravel().tolist()}))
"""


def test_save_load_round_trip(tmp_path: Path, trained) -> None:
    model = trained[0]
    path = tmp_path / "models" / "text.keras"
    digest = save_model(model, path)
    assert digest == sha256_file(path) and len(digest) == 64
    assert [p.name for p in path.parent.iterdir()] == ["text.keras"]  # no temp file left
    loaded = load_model_verified(path, digest)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_tampered_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "gen.keras"
    digest = save_model(build_generator(IMAGE_PRESETS["tiny"]), path)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError):
        load_model_verified(path, digest)
    with pytest.raises(ValueError):
        save_model(build_generator(IMAGE_PRESETS["tiny"]), tmp_path / "gen.h5")


def test_fresh_process_generates_identically(
    tmp_path: Path, trained, generator, char_tokenizer
) -> None:
    gen = build_generator(IMAGE_PRESETS["tiny"])
    args = {
        "text": str(tmp_path / "text.keras"),
        "text_sha": save_model(trained[0], tmp_path / "text.keras"),
        "image": str(tmp_path / "gen.keras"),
        "image_sha": save_model(gen, tmp_path / "gen.keras"),
        "tokenizer": char_tokenizer.to_json(),
    }
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_SCRIPT, json.dumps(args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["text"] == generator.generate_text("The ", 30, 0.8, 5, 9)["text"]
    assert result["pixels"] == generate_images(gen, 3, 5).ravel().tolist()
