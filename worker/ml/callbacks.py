"""Keras callbacks that report progress, honour cancellation and trigger checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras


class ProgressCallback(keras.callbacks.Callback):
    """Report training progress at most every min_interval_s, and at every epoch end.

    Every report carries ``history``, one entry per finished epoch (loss and val_loss), so a
    reader can draw the training curves from the latest progress alone.
    """

    def __init__(
        self,
        report: Callable[[dict], None],
        min_interval_s: float,
        steps_per_epoch: int,
        batch_size: int,
        seq_len: int | None = None,
    ):
        super().__init__()
        self.report = report
        self.min_interval_s = float(min_interval_s)
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        # Items per step: tokens for sequence models, examples otherwise.
        self.items_per_step = int(batch_size) * int(seq_len or 1)
        self.rate_key = "tokens_per_s" if seq_len else "items_per_s"
        self._epoch = 0
        self._epoch_start = 0.0
        self._last_report = 0.0
        self.history: list[dict[str, float | int | None]] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Start timing an epoch."""
        self._epoch = epoch
        self._epoch_start = self._last_report = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Report if min_interval_s has passed since the last report."""
        now = time.monotonic()
        if now - self._last_report >= self.min_interval_s:
            self._last_report = now
            self.report(self._payload(batch + 1, logs or {}, now))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Always report at the end of an epoch, with val_loss when there is one."""
        now = time.monotonic()
        self._last_report = now
        logs = logs or {}
        self.history.append(
            {
                "epoch": epoch + 1,
                "loss": _float(logs.get("loss")),
                "val_loss": _float(logs.get("val_loss")),
            }
        )
        self.report(self._payload(self.steps_per_epoch, logs, now, epoch_end=True))

    def _payload(self, step: int, logs: dict, now: float, epoch_end: bool = False) -> dict:
        """Return the progress dict for step steps done in the current epoch."""
        elapsed = max(now - self._epoch_start, 1e-9)
        s_per_step = elapsed / max(step, 1)
        epochs = int((self.params or {}).get("epochs") or self._epoch + 1)
        steps_left = (epochs - self._epoch - 1) * self.steps_per_epoch
        steps_left += max(self.steps_per_epoch - step, 0)
        val_loss = logs.get("val_loss") if epoch_end else None
        return {
            "epoch": self._epoch,
            "step": step,
            "steps_per_epoch": self.steps_per_epoch,
            "loss": _float(logs.get("loss")),
            "val_loss": _float(val_loss),
            self.rate_key: step * self.items_per_step / elapsed,
            "eta_s": steps_left * s_per_step,
            "history": list(self.history),
        }


def _float(value: object) -> float | None:
    """Return value as a Python float, or None when absent."""
    return None if value is None else float(value)


class CancelCallback(keras.callbacks.Callback):
    """Stop training at the next batch end once should_stop() returns true."""

    def __init__(self, should_stop: Callable[[], bool]):
        super().__init__()
        self.should_stop = should_stop
        self.cancelled = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Ask Keras to stop when cancellation was requested."""
        if self.should_stop():
            self.cancelled = True
            self.model.stop_training = True


class CheckpointCallback(keras.callbacks.Callback):
    """Call save(epoch, logs) at the end of every epoch."""

    def __init__(self, save: Callable[[int, dict], None]):
        super().__init__()
        self.save = save

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Save a checkpoint for the finished epoch."""
        self.save(epoch, logs or {})
