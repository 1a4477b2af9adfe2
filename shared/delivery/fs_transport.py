"""kombu's filesystem transport (the embedded broker), made safe for concurrent processes.

Three changes to the stock transport:

- Queues are read in the order given. The stock transport takes turns between queues; a worker
  must take a lane's re-delivered jobs before its new ones on the embedded defaults too, as Redis
  does with ``queue_order_strategy``.
- A message is written atomically. The stock ``_put`` creates the final file and then writes it,
  so a consumer polling in between takes an empty file and dies on its JSON. Here it is written
  under a name no reader matches and renamed into the queue once complete.
- A message is taken by an atomic rename into a folder beside the queue (the stock one moves it
  to the system's temporary folder, which is a copy when that is another file system, so two
  consumers could both take it). A file that does not decode (empty, torn, or not ours) is moved
  to a quarantine folder with a log line, never raised into the consumer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from functools import cached_property
from pathlib import Path
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport.virtual import Empty
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

# Names a reader never takes: a queue file is "<stamp>_<uuid>.<queue>.msg".
TEMP_PREFIX = ".put-"


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
    """A filesystem channel with atomic puts, atomic takes and quarantine, polled in order."""

    def _reset_cycle(self) -> None:
        self._cycle = InOrder(self._get_and_deliver, self._active_queues, Empty)

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Write the message beside the queue under a temporary name, then rename it in."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        temp = os.path.join(self.data_folder_out, TEMP_PREFIX + name)
        try:
            with open(temp, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(temp, final)
        except OSError as exc:
            _remove_quietly(temp)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: str) -> Any:
        """Take the oldest message of ``queue`` that decodes; quarantine the ones that do not."""
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            taken = self._take(name)
            if taken is None:
                continue  # another consumer took it first
            payload = self._decode(taken)
            if payload is not None:
                return payload
        raise Empty()

    def _take(self, name: str) -> Path | None:
        """Move a queue file into the taken folder; None if another consumer won it."""
        taken = self.taken_folder / name
        try:
            os.rename(os.path.join(self.data_folder_in, name), taken)
        except OSError:
            return None
        return taken

    def _decode(self, path: Path) -> Any:
        """Return a taken file's message and delete the file, or quarantine it and return None."""
        raw = path.read_bytes()
        try:
            payload = loads(raw.decode())
            if not isinstance(payload, dict):
                raise ValueError(f"a message is a JSON object, not {type(payload).__name__}")
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            os.replace(path, self.quarantine_folder / path.name)
            log.warning(
                "quarantined broker file %s (%d bytes) that does not decode: %s",
                path.name,
                len(raw),
                exc,
                extra={"broker_file": str(self.quarantine_folder / path.name)},
            )
            return None
        path.unlink()
        return payload

    @cached_property
    def taken_folder(self) -> Path:
        """Where a consumer moves a message it takes: beside the queue, on its file system."""
        return _beside_queue(self.data_folder_in, "taken")

    @cached_property
    def quarantine_folder(self) -> Path:
        """Where files that do not decode are kept for an operator to look at."""
        return _beside_queue(self.data_folder_in, "quarantine")


def _beside_queue(queue_folder: str, name: str) -> Path:
    folder = Path(queue_folder).parent / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


class Transport(filesystem.Transport):
    """The filesystem transport with ordered polling, atomic messages and quarantine."""

    Channel = Channel
