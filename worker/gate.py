"""Lets a worker's jobs run side by side, except a solo job, which runs with nobody beside it.

A job whose worker was lost beside other jobs twice, with it running, is marked solo: if it is
the one that kills its process, it then takes no neighbour with it, and only its own attempts
count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

# What a job does while it waits for its place: mark its message held (the lease keeper's).
Holding = Callable[[], AbstractContextManager[object]]


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
    """A readers-writer lock that prefers the writer, so a solo job is not starved.

    A job that must wait for its place has had its message taken from the broker, yet is still
    queued: ``holding`` (the lease keeper's) marks it held for as long as it waits, so that the
    reconciler does not take its message for lost. Only a wait pays for that write.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.readers = 0
        self.writer = False
        self._waiting_writers = 0

    def _shared_free(self) -> bool:
        return not self.writer and not self._waiting_writers

    def _exclusive_free(self) -> bool:
        return not self.writer and not self.readers

    @contextmanager
    def shared(self, holding: Holding = nullcontext) -> Iterator[Hold]:
        """Hold a place beside other ordinary jobs (waiting under ``holding`` if need be)."""
        with self.cond:
            free = self._shared_free()
            if free:
                self.readers += 1
        if not free:
            with holding(), self.cond:
                self.cond.wait_for(self._shared_free)
                self.readers += 1
        hold = Hold(self, exclusive=False)
        try:
            yield hold
        finally:
            hold.release()

    @contextmanager
    def exclusive(self, holding: Holding = nullcontext) -> Iterator[Hold]:
        """Hold the whole worker: wait until nothing else runs, and let nothing start."""
        with self.cond:
            self._waiting_writers += 1
            free = self._exclusive_free()
            if free:
                self._take_exclusive()
        if not free:
            with holding(), self.cond:
                self.cond.wait_for(self._exclusive_free)
                self._take_exclusive()
        hold = Hold(self, exclusive=True)
        try:
            yield hold
        finally:
            hold.release()

    def _take_exclusive(self) -> None:
        self._waiting_writers -= 1
        self.writer = True


GATE = RunGate()  # one per worker process
