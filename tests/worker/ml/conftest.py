"""Shared fixtures for the ML tests: a small corpus and a tiny trained text model."""

from __future__ import annotations

import numpy as np
import pytest

CORPUS_CHARS = 20_000


@pytest.fixture(scope="session")
def corpus() -> str:
    """Return ~20 KB of English prose bundled with Python (no download)."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))[:CORPUS_CHARS]


@pytest.fixture(scope="session")
def char_tokenizer(corpus: str):
    """Return a char tokenizer fitted on the corpus."""
    from shared.models.tokenizers import Tokenizer

    return Tokenizer.fit("char", corpus, max_vocab=256)


@pytest.fixture(scope="session")
def windows(corpus: str, char_tokenizer):
    """Return (x_train, y_train, x_val, y_val) for the tiny preset."""
    from worker.ml.text import PRESETS, make_windows

    ids = np.asarray(char_tokenizer.encode(corpus), np.int32)
    return make_windows(ids, PRESETS["tiny"].seq_len, val_split=0.1)


@pytest.fixture(scope="session")
def trained(char_tokenizer, windows):
    """Return (model, history) for the tiny preset trained one epoch on the corpus."""
    import keras

    from worker.ml.text import PRESETS, build_text_model, config_for_tokenizer, train_text

    keras.utils.set_random_seed(1234)
    cfg = config_for_tokenizer(PRESETS["tiny"], char_tokenizer)
    model = build_text_model(cfg)
    x_train, y_train, x_val, y_val = windows
    history = train_text(
        model,
        x_train,
        y_train,
        x_val,
        y_val,
        epochs=1,
        batch_size=32,
        learning_rate=cfg.learning_rate,
    )
    return model, history


@pytest.fixture(scope="session")
def generator(trained, char_tokenizer):
    """Return a TextGenerator over the trained tiny model."""
    from worker.ml.text import TextGenerator

    return TextGenerator(trained[0], char_tokenizer)
