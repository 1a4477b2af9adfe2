"""Progress, cancellation and checkpoint callbacks driven by a real model.fit."""

from __future__ import annotations

import pytest

from worker.ml.callbacks import CancelCallback, CheckpointCallback, ProgressCallback
from worker.ml.text import PRESETS, build_text_model, config_for_tokenizer, train_text

pytestmark = pytest.mark.ml
BATCH = 64


@pytest.fixture()
def small_data(windows):
    x_train, y_train, x_val, y_val = windows
    return x_train[: BATCH * 4], y_train[: BATCH * 4], x_val[:BATCH], y_val[:BATCH]


def test_progress_checkpoint_and_cancel(small_data, char_tokenizer) -> None:
    model = build_text_model(config_for_tokenizer(PRESETS["tiny"], char_tokenizer))
    seq_len = PRESETS["tiny"].seq_len
    reports: list[dict] = []
    saved: list[int] = []
    progress = ProgressCallback(
        reports.append, min_interval_s=0.0, steps_per_epoch=4, batch_size=BATCH, seq_len=seq_len
    )
    train_text(
        model,
        *small_data,
        epochs=2,
        batch_size=BATCH,
        callbacks=[progress, CheckpointCallback(lambda epoch, _: saved.append(epoch))],
    )
    assert saved == [0, 1]
    assert len(reports) == 2 * (4 + 1)  # every batch (interval 0) plus each epoch end
    last = reports[-1]
    assert last["epoch"] == 1 and last["step"] == 4 and last["steps_per_epoch"] == 4
    assert last["val_loss"] is not None and last["loss"] > 0
    assert last["tokens_per_s"] > 0 and last["eta_s"] == 0
    assert reports[0]["val_loss"] is None and reports[0]["eta_s"] > 0

    asked = iter(range(100))
    cancel = CancelCallback(lambda: next(asked) >= 1)
    seen: list[dict] = []
    history = train_text(
        model,
        *small_data,
        epochs=3,
        batch_size=BATCH,
        initial_epoch=2,
        callbacks=[cancel, ProgressCallback(seen.append, 3600.0, 4, BATCH)],
    )
    assert cancel.cancelled and len(history.epoch) <= 1
    assert all(r["step"] <= 2 for r in seen if r["val_loss"] is None)
