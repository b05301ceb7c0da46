"""The table issue 14 asks ``make bench`` for, its JSON, and the open-loop run's plot."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oms_devtools.bench_stats import Spread


@dataclass(frozen=True)
class Measure:
    """One row: what is measured, its repeated values' spread, the goal and which way is
    better."""

    name: str
    spread: Spread
    unit: str
    goal: float
    higher_is_better: bool = True
    digits: int = 2

    @property
    def met(self) -> bool:
        if self.higher_is_better:
            return self.spread.median >= self.goal
        return self.spread.median <= self.goal

    def as_dict(self) -> dict[str, Any]:
        return {"measure": self.name, "unit": self.unit, **self.spread.as_dict(),
                "goal": self.goal, "goal_is": "at least" if self.higher_is_better else "at most",
                "met": self.met}


def table(measures: Sequence[Measure]) -> str:
    """Fixed-width text: measure, median, range over the runs, goal, met or not."""
    width = max(len(m.name) for m in measures)
    lines = [f"  {'measure':<{width}}  {'median':>10}  {'range (runs)':>22}  {'goal':>10}  met",
             "  " + "-" * (width + 52)]
    for m in measures:
        d = m.digits
        goal = f"{'>=' if m.higher_is_better else '<='} {m.goal:g}"
        spread = f"{m.spread.low:.{d}f}..{m.spread.high:.{d}f} ({m.spread.runs})"
        lines.append(f"  {m.name:<{width}}  {m.spread.median:>10.{d}f}  {spread:>22}  "
                     f"{goal:>10}  {'yes' if m.met else 'no'}")
    return "\n".join(lines)


def write_json(path: Path, measures: Sequence[Measure], details: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"table": [m.as_dict() for m in measures], **details},
                               indent=2, default=str) + "\n")


def plot(path: Path, series: Sequence[Mapping[str, float | None]], rate: float) -> None:
    """Throughput (posted and released per second) over latency (p50, p99 of the orders
    released in each second; a gap where a second released nothing) for the open-loop
    run."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    seconds = [row["second"] for row in series]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    top.plot(seconds, [row["posted"] for row in series], label="posted /s")
    top.plot(seconds, [row["released"] for row in series], label="released /s")
    top.axhline(rate, linestyle=":", color="grey", label=f"arrival rate {rate:.1f}/s")
    top.set_ylabel("orders per second")
    top.legend(loc="lower right")
    def latency(name: str) -> list[float]:
        return [math.nan if row[name] is None else float(row[name] or 0) for row in series]

    bottom.plot(seconds, latency("p50_ms"), marker=".", label="p50")
    bottom.plot(seconds, latency("p99_ms"), marker=".", label="p99")
    bottom.axhline(250, linestyle=":", color="red", label="p99 goal 250 ms")
    bottom.set_ylabel("post -> released, ms")
    bottom.set_xlabel("seconds since the first post")
    bottom.legend(loc="upper right")
    fig.suptitle("Open loop: orders posted at a fixed rate, released and their latency")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
