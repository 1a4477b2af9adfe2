"""A simulated accelerator: a job type whose passes take as long as the measured H200's.

On a CPU-only machine this shows whether the platform can feed a GPU. ``bench.accel`` items run
as chunks (one model pass per chunk, ``rows`` = the chunk's items); a pass holds the one device
of its worker process and sleeps, releasing the GIL, for ``rows x steps / R(rows)``: R is the
H200's measured decode rate of the ``small`` text model (JAX, one compiled loop, fp32),
interpolated on a log scale between the measured batch sizes. Each item's result says when its
pass ran, so the bench reads the device's duty cycle off the results.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from typing import Any

from pydantic import Field

from shared.jobs.numbers import Int
from shared.jobs.params import Params

# (rows per pass, tokens/s) for the `small` model on one H200.
H200_SMALL_RATES = ((1, 33e3), (64, 1.3e6), (1024, 5.3e6), (8192, 6.1e6))
ITEM_TOKENS = 64  # the bulk text item

_DEVICE = threading.Lock()  # one device per worker process: passes never overlap


class AccelParams(Params):
    """One simulated generation of ``steps`` tokens."""

    steps: Int = Field(ITEM_TOKENS, ge=1, le=4096)


def device_rate(rows: int) -> float:
    """Return the H200's tokens/s at ``rows`` rows per pass (log-log interpolation, clamped)."""
    sizes = [r for r, _ in H200_SMALL_RATES]
    rows = min(max(rows, sizes[0]), sizes[-1])
    i = min(max(bisect.bisect_left(sizes, rows), 1), len(sizes) - 1)
    (r0, t0), (r1, t1) = H200_SMALL_RATES[i - 1], H200_SMALL_RATES[i]
    share = (math.log(rows) - math.log(r0)) / (math.log(r1) - math.log(r0))
    return math.exp(math.log(t0) + share * (math.log(t1) - math.log(t0)))


def pass_seconds(rows: int, steps: int) -> float:
    """Return how long the H200 takes for one pass of ``rows`` rows and ``steps`` decode steps."""
    return rows * steps / device_rate(rows)


def _device_pass(rows: int, steps: int) -> dict[str, float]:
    seconds = pass_seconds(rows, steps)
    with _DEVICE:
        started = time.time()
        time.sleep(seconds)  # sleeping releases the GIL, as a device call does
    # The device was busy for the pass alone: the time this thread then waits for the GIL (busy
    # host threads) is the platform's, and the next pass cannot start before it is over.
    return {"pass_start": started, "pass_end": started + seconds, "pass_rows": rows}


def accel(ctx: Any, params: AccelParams) -> dict[str, Any]:
    """Run one item as a pass of one row (an interactive request)."""
    return _device_pass(1, params.steps)


def accel_chunk(ctx: Any, params: list[AccelParams]) -> list[dict[str, Any]]:
    """Run a chunk of items as one pass of as many rows."""
    timing = _device_pass(len(params), max(p.steps for p in params))
    return [dict(timing) for _ in params]
