"""The bench's report: rows set against a same-run baseline, their targets, and CPU per job."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.cpu import CLIENT, OTHER, PLATFORM

# Components in the CPU table, in the order a job meets them.
CPU_COLUMNS = {
    "api": "API",
    "worker": "worker",
    "reconciler": "reconciler",
    "postgres": "PostgreSQL",
    "redis": "Redis",
    PLATFORM: "platform total",
    CLIENT: "bench client",
    OTHER: "other processes",
}
BUCKETS = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Target:
    """A bound on a row's ratio: ``op`` is ``<=`` or ``>=``; ``times`` prints it as a multiple."""

    op: str
    bound: float
    times: bool = False
    note: str = ""

    def met(self, ratio: float) -> bool:
        """Return whether the ratio meets the target."""
        return ratio <= self.bound if self.op == "<=" else ratio >= self.bound

    def __str__(self) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        text = f"{sign} {self.bound:g}{'×' if self.times else ''}"
        return f"{text} ({self.note})" if self.note else text


@dataclass
class Row:
    """One line of the table: a value beside its same-run baseline."""

    num: str
    measure: str
    value: str
    baseline: str
    ratio: float | None = None
    target: Target | None = None
    jobs: str = "—"

    @property
    def met(self) -> bool | None:
        """Return whether the target is met (None without a target or a ratio)."""
        if self.target is None or self.ratio is None or math.isnan(self.ratio):
            return None
        return self.target.met(self.ratio)

    def cells(self) -> list[str]:
        """Return the row's markdown cells."""
        times = self.target.times if self.target else False
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}{'×' if times else ''}"
        met = {None: "—", True: "yes", False: "**no**"}[self.met]
        target = str(self.target) if self.target else "—"
        return [self.num, self.measure, self.value, self.baseline, ratio, target, met, self.jobs]


@dataclass
class Report:
    """Everything one run measured: table rows, CPU per job, and the raw figures."""

    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    cpu: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def row(self, *args: Any, **kwargs: Any) -> None:
        """Add a table row (the arguments of ``Row``) and print it at once."""
        self.rows.append(Row(*args, **kwargs))
        print("| " + " | ".join(self.rows[-1].cells()) + " |", flush=True)

    def cpu_row(self, num: str, measure: str, count: int, per_job: dict[str, float]) -> None:
        """Add a line of CPU-ms per job (or message) by component."""
        self.cpu.append({"num": num, "measure": measure, "count": count, "per_job": per_job})

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        rows = [{**asdict(r), "target": str(r.target or ""), "met": r.met} for r in self.rows]
        return {"machine": self.machine, "rows": rows, "cpu": self.cpu, "raw": self.raw}

    def markdown(self) -> str:
        """Return the machine line, the main table and the CPU table as markdown."""
        m = self.machine
        head = ["#", "Measure", "Value", "Compared with (same run)", "Ratio", "Target", "Met"]
        lines = [
            f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, "
            f"Keras {m['keras']} on {m['backend']} (CPU)",
            "",
            _line([*head, "Jobs"]),
            _line(["---"] * (len(head) + 1)),
            *(_line(r.cells()) for r in sorted(self.rows, key=_order)),
            "",
            "CPU-milliseconds per job (per message for the publish rows), read from /proc: each "
            "component's process tree, reaped children included. The platform total leaves out "
            "the bench client, for ours and the baselines alike; other processes is the rest of "
            "the machine's busy time meanwhile (about zero when nothing else ran).",
            "",
            _line(["#", "Measure", "Jobs", *CPU_COLUMNS.values()]),
            _line(["---"] * (len(CPU_COLUMNS) + 3)),
        ]
        for c in sorted(self.cpu, key=_order):
            cells = [_ms(c["per_job"].get(k)) for k in CPU_COLUMNS]
            lines.append(_line([c["num"], c["measure"], f"{c['count']:,}", *cells]))
        return "\n".join(lines) + "\n"


def _order(entry: Row | dict[str, Any]) -> int:
    # Issue 9's numbering; a stable sort keeps each number's lines in the order they ran.
    return int(entry.num if isinstance(entry, Row) else entry["num"])


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.0f}"


def histogram(stats: list[dict[str, float]]) -> str:
    """Summarize realized rows per pass and queue wait against compute from jobs' batching."""
    if not stats:
        return "no batched jobs"
    sizes = Counter(next((e for e in BUCKETS if s["mean_batch"] <= e), 64) for s in stats)
    wait = sum(s["queue_wait_s"] for s in stats) / len(stats)
    compute = sum(s["compute_s"] for s in stats) / len(stats)
    hist = ", ".join(f"≤{k}: {v}" for k, v in sorted(sizes.items()))
    return (
        f"jobs by mean rows per pass {{{hist}}}; mean wait {wait * 1000:.1f} ms vs compute "
        f"{compute * 1000:.1f} ms"
    )
