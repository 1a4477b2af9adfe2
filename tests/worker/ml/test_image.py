"""DCGAN: shapes, deterministic sampling, PNG output, alternating training."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from shared.models.presets import IMAGE_PRESETS, ImageConfig
from worker.ml.image import (
    DCGAN,
    build_discriminator,
    build_generator,
    encode_png,
    generate_images,
    image_grid,
    load_digits_dataset,
)

pytestmark = pytest.mark.ml
TINY = IMAGE_PRESETS["tiny"]


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_digits_dataset(TINY)


@pytest.mark.parametrize("channels", [1, 3])
def test_generated_images_are_uint8_and_encode_as_png(channels: int) -> None:
    cfg = ImageConfig(latent_dim=16, channels=channels, base_filters=16, disc_filters=8)
    gen = build_generator(cfg)
    images = generate_images(gen, 3, seed=0)
    assert images.shape == (3, 32, 32, channels) and images.dtype == np.uint8
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(images[0]))))
    assert decoded.shape == ((32, 32) if channels == 1 else (32, 32, 3))
    np.testing.assert_array_equal(decoded.reshape(images[0].shape), images[0])
    assert image_grid(images, cols=2).shape == (64, 64, channels)


def test_same_seed_same_images() -> None:
    gen = build_generator(TINY)
    a, b = generate_images(gen, 5, seed=42), generate_images(gen, 5, seed=42)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, generate_images(gen, 5, seed=43))
    np.testing.assert_array_equal(generate_images(gen, 2, seed=42), a[:2])  # batch-size invariant


@pytest.mark.parametrize("size,blocks", [(16, 1), (32, 2), (64, 3)])
def test_discriminator_accepts_generator_output(size: int, blocks: int) -> None:
    cfg = ImageConfig(latent_dim=8, image_size=size, base_filters=16, disc_filters=4)
    assert cfg.upsamples == blocks
    gen, disc = build_generator(cfg), build_discriminator(cfg)
    assert gen.output_shape == (None, size, size, 1)
    # Symbolic call: shapes are checked without compiling (the DCGAN test runs it for real).
    assert disc(gen.outputs[0]).shape == (None, 1)


def test_reference_generator_matches_tutorial_sizes() -> None:
    gen = build_generator(ImageConfig())
    shapes = [layer.output.shape for layer in gen.layers if "conv" in layer.name]
    assert shapes == [(None, 8, 8, 128), (None, 16, 16, 64)]
    assert gen.output_shape == (None, 32, 32, 1)
    assert gen.get_layer("project").kernel.shape == (100, 8 * 8 * 256)


@pytest.mark.parametrize("size", [8, 24, 48])
def test_bad_image_sizes_are_rejected(size: int) -> None:
    with pytest.raises(ValueError):
        ImageConfig(image_size=size)


def test_digits_dataset_is_scaled(digits: np.ndarray) -> None:
    assert digits.shape == (1797, 32, 32, 1) and digits.dtype == np.float32
    assert digits.min() == pytest.approx(-1.0) and digits.max() == pytest.approx(1.0)


def test_train_epoch_trains_both_stops_and_freezes_discriminator(digits: np.ndarray) -> None:
    # A discriminator saved after training is frozen (trainable=False); it must still train.
    disc = build_discriminator(TINY)
    disc.trainable = False
    gan = DCGAN(TINY, build_generator(TINY), disc)
    before = [[w.numpy().copy() for w in m.weights] for m in (gan.generator, disc)]
    steps: list[tuple[int, float, float]] = []
    result = gan.train_epoch(
        digits[:64], batch_size=16, rng_seed=0, on_batch=lambda s, d, g: steps.append((s, d, g))
    )
    assert [s for s, _, _ in steps] == [0, 1, 2, 3]
    assert math.isfinite(result["d_loss"]) and math.isfinite(result["g_loss"])
    for model, old in zip((gan.generator, disc), before, strict=True):
        assert any(
            not np.array_equal(a, w.numpy()) for a, w in zip(old, model.weights, strict=True)
        )
    calls = iter(range(100))
    stopped = gan.train_epoch(
        digits[:64], batch_size=16, rng_seed=1, should_stop=lambda: next(calls) >= 2
    )
    assert stopped["steps"] == 2
    # A generator step must leave the (frozen) discriminator untouched.
    disc_before = [np.array(w.numpy()) for w in gan.discriminator.weights]
    z = np.random.default_rng(0).standard_normal((16, TINY.latent_dim)).astype(np.float32)
    gan.combined.train_on_batch(z, np.ones((16, 1), np.float32))
    for old_w, new_w in zip(disc_before, gan.discriminator.weights, strict=True):
        np.testing.assert_array_equal(old_w, new_w.numpy())
