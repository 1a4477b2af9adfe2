"""Lets a worker's jobs run side by side, except a solo job, which runs with nobody beside it.

A job rescued from a process that died with others running is marked solo: if it is the one
that kills its process, it then takes no neighbour with it, and only its own attempts count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Hold:
    """One job's place in the gate; released once, by its thread or by the keeper."""

    def __init__(self, gate: RunGate, exclusive: bool) -> None:
        self._gate = gate
        self._exclusive = exclusive
        self._released = False

    def release(self) -> None:
        """Give the place back (a second call does nothing)."""
        with self._gate.cond:
            if self._released:
                return
            self._released = True
            if self._exclusive:
                self._gate.writer = False
            else:
                self._gate.readers -= 1
            self._gate.cond.notify_all()


class RunGate:
    """A readers-writer lock that prefers the writer, so a solo job is not starved."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.readers = 0
        self.writer = False
        self._waiting_writers = 0

    @contextmanager
    def shared(self) -> Iterator[Hold]:
        """Hold a place beside other ordinary jobs."""
        with self.cond:
            self.cond.wait_for(lambda: not self.writer and not self._waiting_writers)
            self.readers += 1
        hold = Hold(self, exclusive=False)
        try:
            yield hold
        finally:
            hold.release()

    @contextmanager
    def exclusive(self) -> Iterator[Hold]:
        """Hold the whole worker: wait until nothing else runs, and let nothing start."""
        with self.cond:
            self._waiting_writers += 1
            self.cond.wait_for(lambda: not self.writer and not self.readers)
            self._waiting_writers -= 1
            self.writer = True
        hold = Hold(self, exclusive=True)
        try:
            yield hold
        finally:
            hold.release()


GATE = RunGate()  # one per worker process
