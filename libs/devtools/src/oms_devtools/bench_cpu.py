"""CPU seconds per process over a measured window: each service, PostgreSQL (the postmaster,
its live backends and those that ended), NATS and the load generator (this process).

On a 2-core machine the generator competes with what it measures; a figure whose generator
used more than ``GENERATOR_LIMIT`` of a core is flagged, since the suite was then short of
CPU the generator took."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

GENERATOR = "generator"
GENERATOR_LIMIT = 0.20  # of one core


def _own(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _tree(pid: int) -> float:
    """A server and everything it forked: its own CPU, its reaped children's and its live
    children's (PostgreSQL backends come and go with connections)."""
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in root.children(recursive=True):
            try:
                total += _own(child)
            except psutil.NoSuchProcess:
                pass  # ended since the listing: its time is in children_* from now on
        return float(total)
    except psutil.NoSuchProcess:
        return 0.0


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


@dataclass
class CpuMeter:
    """``pids`` gives, at each reading, the processes to read by name (a service restarted
    between figures has a new pid); the generator is always this process."""

    pids: Callable[[], Mapping[str, int]]
    trees: frozenset[str] = field(default_factory=lambda: frozenset({"postgres", "nats"}))

    def read(self) -> dict[str, float]:
        seconds = {GENERATOR: _own(psutil.Process())}
        for name, pid in self.pids().items():
            seconds[name] = _tree(pid) if name in self.trees else _safe_own(pid)
        return seconds

    @contextmanager
    def window(self) -> Iterator[CpuWindow]:
        """CPU seconds each process spent while the block ran, and the block's wall time."""
        result = CpuWindow()
        before, started = self.read(), time.perf_counter()
        try:
            yield result
        finally:
            after = self.read()
            result.wall_s = time.perf_counter() - started
            result.seconds = {name: max(after[name] - before.get(name, 0.0), 0.0)
                              for name in after}


def _safe_own(pid: int) -> float:
    try:
        return _own(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return 0.0


@dataclass
class CpuWindow:
    seconds: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def generator_share(self) -> float:
        """The generator's CPU as a share of one core over the window."""
        return self.seconds.get(GENERATOR, 0.0) / self.wall_s if self.wall_s else 0.0

    @property
    def cores_used(self) -> float:
        """Cores the measured processes kept busy on average: on a machine shared with other
        work, well under its core count means the figure was starved, not saturated."""
        return sum(self.seconds.values()) / self.wall_s if self.wall_s else 0.0

    @property
    def generator_flagged(self) -> bool:
        return self.generator_share > GENERATOR_LIMIT

    def text(self) -> str:
        busiest = sorted(self.seconds.items(), key=lambda item: -item[1])
        parts = ", ".join(f"{name} {s:.1f}" for name, s in busiest)
        flag = (f"  ! generator at {self.generator_share:.0%} of a core (> "
                f"{GENERATOR_LIMIT:.0%})" if self.generator_flagged else "")
        return (f"CPU s over {self.wall_s:.1f} s: {parts} ({self.cores_used:.2f} of "
                f"{psutil.cpu_count()} cores){flag}")

    def as_dict(self) -> dict[str, object]:
        return {"wall_s": self.wall_s, "cpu_s": dict(self.seconds),
                "generator_share_of_core": self.generator_share,
                "cores_used": self.cores_used,
                "generator_flagged": self.generator_flagged}
