"""CPU time of the stack's processes, read from /proc: on two shared cores it is steadier than
latency, so every row reports CPU-milliseconds per job per component beside its timings.

A component is a process tree (a gunicorn master and its workers, a Celery worker and its
children, the PostgreSQL postmaster and every backend, redis-server). Its CPU is the user and
system time of every live process in the tree plus the time of children already reaped
(``cutime``/``cstime``): a PostgreSQL backend that exits mid-measure moves its time into the
postmaster's, so it is still counted, and never twice.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

MS_PER_TICK = 1000 / os.sysconf("SC_CLK_TCK")
CLIENT = "client"  # the bench process itself: reported, never part of a platform total
PLATFORM = "platform"  # the sum of every component but the client
# Everything else the machine ran meanwhile: near zero on a quiet machine, and the sign of a
# run that shared its cores (PostgreSQL's and Redis's other clients are not in it).
OTHER = "other"
_MACHINE = "machine"


def _stat(pid: int) -> tuple[int, int, int] | None:
    """Return (ppid, own ticks, reaped children's ticks) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return int(fields[1]), utime + stime, cutime + cstime


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            tree[st[0]].append(int(entry.name))
    return tree


def tree_ms(root: int, children: Mapping[int, list[int]]) -> float:
    """Return the CPU milliseconds a process tree has used, reaped children included."""
    ticks, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if (st := _stat(pid)) is not None:
            ticks += st[1] + st[2]
            stack.extend(children.get(pid, ()))
    return ticks * MS_PER_TICK


def own_ms(pid: int) -> float:
    """Return the CPU milliseconds of one process alone (all its threads, no children)."""
    st = _stat(pid)
    return st[1] * MS_PER_TICK if st else 0.0


def machine_ms() -> float:
    """Return the CPU milliseconds every core of the machine has spent busy (not idle)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    # guest time is already inside user and nice
    return (sum(fields[:8]) - idle - iowait) * MS_PER_TICK


def busy_cores(seconds: float = 2.0) -> float:
    """Return how many cores the machine keeps busy over ``seconds``."""
    before = machine_ms()
    time.sleep(seconds)
    return (machine_ms() - before) / 1000 / seconds


def snapshot(roots: Mapping[str, int]) -> dict[str, float]:
    """Return the CPU ms of each component's tree, of this process (the client), of the machine."""
    children = _children()
    out = {name: tree_ms(pid, children) for name, pid in roots.items()}
    out[CLIENT] = own_ms(os.getpid())
    out[_MACHINE] = machine_ms()
    return out


class Meter:
    """Measures each component's CPU over a ``with`` block, then per job."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self.roots = dict(roots)
        self.used: dict[str, float] = {}

    def __enter__(self) -> Meter:
        self._before = snapshot(self.roots)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        after = snapshot(self.roots)
        used = {k: after[k] - self._before[k] for k in after}
        machine = used.pop(_MACHINE)
        self.used = {**used, OTHER: machine - sum(used.values())}

    def per_job(self, jobs: int) -> dict[str, float]:
        """Return CPU-ms per job of each component, the client, and the platform's total."""
        out = {k: v / jobs for k, v in self.used.items()}
        if self.roots:  # a measure of the client alone has no platform
            out[PLATFORM] = sum(v for k, v in out.items() if k not in (CLIENT, OTHER))
        return {k: round(v, 4) for k, v in out.items()}


def _tree_status(root: int, field: str) -> int:
    """Return a ``/proc/PID/status`` field summed over a process tree (its first number)."""
    children, total, stack = _children(), 0, [root]
    while stack:
        pid = stack.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if f"{field}:" in status:  # a zombie has no memory lines
            total += int(status.split(f"{field}:", 1)[1].split()[0])
        stack.extend(children.get(pid, ()))
    return total


def tree_threads(root: int) -> int:
    """Return how many threads a process tree runs now."""
    return _tree_status(root, "Threads")


def tree_rss_mb(root: int) -> float:
    """Return the resident memory of a process tree now, in MiB."""
    return _tree_status(root, "VmRSS") / 1024


class Peak:
    """Samples a measure of a process tree while a ``with`` block runs; keeps the peak."""

    def __init__(
        self, root: int, measure: Callable[[int], float] = tree_threads, every_s: float = 0.2
    ) -> None:
        self.root, self.measure, self.every_s = root, measure, every_s
        self.start: float = 0
        self.peak: float = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, self.measure(self.root))

    def __enter__(self) -> Peak:
        self.start = self.peak = self.measure(self.root)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
