"""Next-token text model (Embedding, LSTM, Dense): config, data windows, training, evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import keras
import numpy as np

from shared.models.presets import PRESETS, TextConfig
from shared.models.tokenizers import Tokenizer
from worker.ml.decode import (
    DecodeState,
    TextGenerator,
    bucket,
    sample_from_logits,
    uniforms_for_seed,
)

__all__ = [
    "PRESETS",
    "DecodeState",
    "TextConfig",
    "TextGenerator",
    "bits_per_char",
    "bits_per_token",
    "build_text_model",
    "config_for_tokenizer",
    "make_windows",
    "metric_name",
    "sample_from_logits",
    "train_text",
    "uniforms_for_seed",
]

# Rows per evaluation call; a fixed size (last batch padded) keeps one compiled shape.
EVAL_BATCH = 64


def config_for_tokenizer(cfg: TextConfig, tokenizer: Tokenizer) -> TextConfig:
    """Return cfg with vocab_size set to the fitted tokenizer's (which may be smaller)."""
    if tokenizer.kind != cfg.tokenizer:
        raise ValueError(f"config wants a {cfg.tokenizer} tokenizer, got {tokenizer.kind}")
    return replace(cfg, vocab_size=tokenizer.vocab_size)


def build_text_model(cfg: TextConfig) -> keras.Model:
    """Return the uncompiled Embedding -> LSTM -> Dense model that outputs next-token logits."""
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(cfg.vocab_size, cfg.embedding_dim, name="embedding")(tokens)
    # Defaults (tanh/sigmoid, no recurrent dropout, no unroll) keep the fused cuDNN kernel usable.
    x = keras.layers.LSTM(cfg.units, return_sequences=True, name="lstm")(x)
    # Logits, not softmax: the loss uses from_logits=True, which is numerically stabler than
    # the tutorial's softmax + cross-entropy, and the sampler applies its own temperature.
    logits = keras.layers.Dense(cfg.vocab_size, name="head")(x)
    return keras.Model(tokens, logits, name="text_lstm")


def make_windows(
    ids: np.ndarray, seq_len: int, val_split: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut ids into non-overlapping next-token windows; the corpus tail is validation."""
    ids = np.asarray(ids, dtype=np.int32)
    if not 0.0 <= val_split < 1.0:
        raise ValueError("val_split must be in [0, 1)")
    cut = len(ids) - round(len(ids) * val_split)
    x_train, y_train = _windows(ids[:cut], seq_len)
    x_val, y_val = _windows(ids[cut:], seq_len)
    return x_train, y_train, x_val, y_val


def _windows(ids: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (inputs, targets) windows of seq_len with targets shifted by one token."""
    n = max((len(ids) - 1) // seq_len, 0)
    if n == 0:
        empty = np.zeros((0, seq_len), np.int32)
        return empty, empty.copy()
    x = ids[: n * seq_len].reshape(n, seq_len)
    y = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return x.copy(), y.copy()


def compile_text_model(model: keras.Model, learning_rate: float = 1e-3) -> None:
    """Compile model with Adam and sparse categorical cross-entropy on logits."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def train_text(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    initial_epoch: int = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    learning_rate: float = 1e-3,
    windows_per_epoch: int | None = None,
) -> keras.callbacks.History:
    """Fit model with plain model.fit, compiling it first unless already compiled.

    With windows_per_epoch, each epoch trains on the next slice of a shuffled order of the
    windows instead of on all of them: short epochs, so progress (and interim versions) come
    early on a large corpus.
    """
    # Recompiling would throw away Adam's moments when training is resumed in-process.
    if not getattr(model, "compiled", False):
        compile_text_model(model, learning_rate)
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    if windows_per_epoch is None:
        data: dict = {"x": x_train, "y": y_train, "batch_size": batch_size, "shuffle": True}
    else:
        slices = WindowSlices(x_train, y_train, batch_size, windows_per_epoch, initial_epoch)
        data = {"x": slices, "shuffle": False}
    return model.fit(
        **data,
        validation_data=(x_val, y_val) if has_val else None,
        validation_batch_size=batch_size,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=list(callbacks),
        verbose=0,
    )


class WindowSlices(keras.utils.PyDataset):
    """Training windows served a slice per epoch, going round one seeded shuffled order."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, windows: int, start_epoch: int
    ):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.order = np.random.default_rng(0).permutation(len(x))
        self.steps = max(math.ceil(min(windows, len(x)) / batch_size), 1)
        # A resumed job continues where its last finished epoch left off.
        self.offset = start_epoch * self.steps * batch_size

    def __len__(self) -> int:
        """Return the steps of one epoch."""
        return self.steps

    def __getitem__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the batch of a step of the current epoch."""
        start = self.offset + step * self.batch_size
        idx = self.order[np.arange(start, start + self.batch_size) % len(self.order)]
        return self.x[idx], self.y[idx]

    def on_epoch_end(self) -> None:
        """Move on to the next slice."""
        self.offset += self.steps * self.batch_size


def bits_per_token(model: keras.Model, x_val: np.ndarray, y_val: np.ndarray) -> float:
    """Return the mean next-token cross-entropy of model on (x_val, y_val), in bits."""
    x_val = np.asarray(x_val, np.int32)
    y_val = np.asarray(y_val, np.int32)
    if len(x_val) == 0:
        return float("nan")
    total, count = 0.0, 0
    for start in range(0, len(x_val), EVAL_BATCH):
        xb, yb = x_val[start : start + EVAL_BATCH], y_val[start : start + EVAL_BATCH]
        rows = len(xb)
        pad = bucket(rows) - rows  # pad to a power of two to bound recompiles
        xb = np.pad(xb, ((0, pad), (0, 0)))
        logits = np.asarray(model.predict_on_batch(xb), np.float64)[:rows]
        top = logits.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
        picked = np.take_along_axis(logits, yb[..., None], axis=-1)[..., 0]
        total += float((log_z - picked).sum())
        count += yb.size
    return total / count / math.log(2.0)


def bits_per_char(
    model: keras.Model, tokenizer: Tokenizer, x_val: np.ndarray, y_val: np.ndarray
) -> float:
    """Return cross-entropy in bits per token, i.e. bits per char for a char tokenizer."""
    del tokenizer  # the value is per token; metric_name(tokenizer) says what a token is
    return bits_per_token(model, x_val, y_val)


def metric_name(tokenizer: Tokenizer) -> str:
    """Return the name under which bits_per_char's value should be reported."""
    return "bits_per_char" if tokenizer.kind == "char" else "bits_per_token"
