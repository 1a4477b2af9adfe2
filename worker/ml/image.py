"""DCGAN image generator: config, models, alternating training, sampling, PNG output."""

from __future__ import annotations

import io
from collections.abc import Callable

import keras
import numpy as np
from PIL import Image

from shared.models.presets import BASE_SIZE, ImageConfig
from worker.ml.decode import bucket

KERNEL = 5


def _up_block(x, filters: int, strides: int, name: str):
    """Return x after a bias-free transposed conv, batch norm and LeakyReLU."""
    x = keras.layers.Conv2DTranspose(
        filters, KERNEL, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(name=f"{name}_act")(x)


def build_generator(cfg: ImageConfig) -> keras.Model:
    """Return the generator mapping latent vectors to images in [-1, 1]."""
    z = keras.Input(shape=(cfg.latent_dim,), name="latent")
    x = keras.layers.Dense(
        BASE_SIZE * BASE_SIZE * cfg.base_filters, use_bias=False, name="project"
    )(z)
    x = keras.layers.BatchNormalization(name="project_bn")(x)
    x = keras.layers.LeakyReLU(name="project_act")(x)
    x = keras.layers.Reshape((BASE_SIZE, BASE_SIZE, cfg.base_filters), name="reshape")(x)
    filters = max(cfg.base_filters // 2, 1)
    x = _up_block(x, filters, 1, "block0")
    # All stride-2 blocks but the last; the last one emits the image channels.
    for i in range(1, cfg.upsamples):
        filters = max(filters // 2, 1)
        x = _up_block(x, filters, 2, f"block{i}")
    image = keras.layers.Conv2DTranspose(
        cfg.channels,
        KERNEL,
        strides=2,
        padding="same",
        use_bias=False,
        activation="tanh",
        name="to_image",
    )(x)
    return keras.Model(z, image, name="generator")


def build_discriminator(cfg: ImageConfig) -> keras.Model:
    """Return the discriminator scoring (image_size, image_size, channels) images as logits."""
    image = keras.Input(shape=(cfg.image_size, cfg.image_size, cfg.channels), name="image")
    x = image
    for i, filters in enumerate((cfg.disc_filters, cfg.disc_filters * 2)):
        x = keras.layers.Conv2D(filters, KERNEL, strides=2, padding="same", name=f"conv{i}")(x)
        x = keras.layers.LeakyReLU(name=f"act{i}")(x)
        x = keras.layers.Dropout(0.3, name=f"drop{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logit = keras.layers.Dense(1, name="logit")(x)
    return keras.Model(image, logit, name="discriminator")


class _TrainModeForward(keras.Model):
    """Run the generator in training mode through a compiled predict call."""

    def __init__(self, generator: keras.Model):
        super().__init__(name="generator_train_forward")
        self.generator = generator
        self.built = True

    def call(self, z):
        """Return generator(z) with batch-norm batch statistics, as the tutorial does."""
        return self.generator(z, training=True)


class DCGAN:
    """A generator, a discriminator and the combined model, trained alternately."""

    def __init__(
        self,
        cfg: ImageConfig,
        generator: keras.Model | None = None,
        discriminator: keras.Model | None = None,
    ):
        self.cfg = cfg
        self.generator = generator or build_generator(cfg)
        self.discriminator = discriminator or build_discriminator(cfg)
        self.discriminator.compile(
            optimizer=keras.optimizers.Adam(cfg.learning_rate),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
        )
        # Frozen while the combined model is built and trained, so its steps move only G.
        self.discriminator.trainable = False
        z = keras.Input(shape=(cfg.latent_dim,), name="latent")
        self.combined = keras.Model(z, self.discriminator(self.generator(z)), name="combined")
        self.combined.compile(
            optimizer=keras.optimizers.Adam(cfg.learning_rate),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
        )
        self._fakes = _TrainModeForward(self.generator)

    def train_step(self, real: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
        """Train D on one real batch plus as many fakes, then G once; return both losses."""
        n = len(real)
        z = rng.standard_normal((n, self.cfg.latent_dim)).astype(np.float32)
        fake = np.asarray(self._fakes.predict_on_batch(z), np.float32)
        images = np.concatenate([real.astype(np.float32), fake])
        labels = np.concatenate([np.ones((n, 1)), np.zeros((n, 1))]).astype(np.float32)
        # Keras 3 reads `trainable` per call (JAX) or at first trace (TF); set it both ways.
        self.discriminator.trainable = True
        d_loss = self.discriminator.train_on_batch(images, labels)
        self.discriminator.trainable = False
        z = rng.standard_normal((n, self.cfg.latent_dim)).astype(np.float32)
        g_loss = self.combined.train_on_batch(z, np.ones((n, 1), np.float32))
        return float(np.asarray(d_loss).ravel()[0]), float(np.asarray(g_loss).ravel()[0])

    def train_epoch(
        self,
        images: np.ndarray,
        batch_size: int,
        rng_seed: int,
        should_stop: Callable[[], bool] = lambda: False,
        on_batch: Callable[[int, float, float], None] | None = None,
    ) -> dict:
        """Run one shuffled epoch (dropping the ragged tail); return the mean losses."""
        rng = np.random.default_rng(rng_seed)
        order = rng.permutation(len(images))
        batch_size = min(batch_size, len(images))
        d_losses: list[float] = []
        g_losses: list[float] = []
        for step in range(len(images) // batch_size):
            if should_stop():
                break
            batch = images[order[step * batch_size : (step + 1) * batch_size]]
            d_loss, g_loss = self.train_step(batch, rng)
            d_losses.append(d_loss)
            g_losses.append(g_loss)
            if on_batch is not None:
                on_batch(step, d_loss, g_loss)
        return {"d_loss": _mean(d_losses), "g_loss": _mean(g_losses), "steps": len(d_losses)}


def _mean(values: list[float]) -> float:
    """Return the mean of values, or NaN when there are none."""
    return float(np.mean(values)) if values else float("nan")


def generate_images(generator: keras.Model, n: int, seed: int) -> np.ndarray:
    """Return n uint8 images [n, H, W, C] from latents drawn with numpy's default_rng(seed)."""
    latent_dim = int(generator.inputs[0].shape[-1])
    z = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    # Pad to a power of two so few distinct batch shapes are ever compiled.
    padded = np.pad(z, ((0, bucket(n) - n), (0, 0)))
    out = np.asarray(generator.predict_on_batch(padded), np.float32)[:n]
    return np.clip(np.rint((out + 1.0) * 127.5), 0, 255).astype(np.uint8)


def encode_png(img: np.ndarray) -> bytes:
    """Return PNG bytes of one uint8 image [H, W, C] with C in {1, 3, 4}."""
    img = np.asarray(img, np.uint8)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def image_grid(images: np.ndarray, cols: int) -> np.ndarray:
    """Return images [N, H, W, C] tiled row-major into one [rows*H, cols*W, C] image."""
    n, h, w, c = images.shape
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    grid = np.zeros((rows * h, cols * w, c), images.dtype)
    for i, img in enumerate(images):
        r, col = divmod(i, cols)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = img
    return grid


def load_digits_dataset(cfg: ImageConfig) -> np.ndarray:
    """Return scikit-learn's 8x8 digits upscaled to cfg.image_size, in [-1, 1], float32."""
    from sklearn.datasets import load_digits  # lazy: only the image job needs scikit-learn

    digits = load_digits().images.astype(np.float32) / 16.0  # values are 0..16
    size = (cfg.image_size, cfg.image_size)
    resized = np.stack(
        [np.asarray(Image.fromarray(d).resize(size, Image.Resampling.BILINEAR)) for d in digits]
    )
    images = np.clip(resized, 0.0, 1.0) * 2.0 - 1.0
    return np.repeat(images[..., None], cfg.channels, axis=-1).astype(np.float32)
