"""kombu's filesystem transport (the embedded broker), reading its queues in the order given.

The stock transport takes turns between queues; a worker must take a lane's re-delivered jobs
before its new ones on the embedded defaults too, as Redis does with ``queue_order_strategy``.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import filesystem
from kombu.transport.virtual import Empty


class InOrder:
    """Tries queues first to last on every read (kombu's FairCycle, without the rotation)."""

    def __init__(self, fun: Any, resources: list[str], predicate: type[Exception]) -> None:
        self.fun = fun
        self.resources = resources
        self.predicate = predicate

    def get(self, callback: Any, **kwargs: Any) -> Any:
        """Return the first message of the first queue that has one."""
        for resource in self.resources:
            try:
                return self.fun(resource, callback, **kwargs)
            except self.predicate:
                continue
        raise self.predicate()

    def close(self) -> None:
        """Nothing to release."""


class Channel(filesystem.Channel):
    """A filesystem channel that polls its queues in priority order."""

    def _reset_cycle(self) -> None:
        self._cycle = InOrder(self._get_and_deliver, self._active_queues, Empty)


class Transport(filesystem.Transport):
    """The filesystem transport with ordered polling."""

    Channel = Channel
