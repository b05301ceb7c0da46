"""How `make run` restarts a service that exits: Kubernetes' crash-loop backoff."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from oms_devtools.stack import RestartPolicy, ServiceProcess, Stack, Supervisor


def test_the_delay_doubles_with_each_quick_crash_up_to_the_cap() -> None:
    policy = RestartPolicy(initial_delay=1, max_delay=30, reset_after=60)
    delays: list[float] = []
    previous = None
    for _ in range(8):
        previous = policy.next_delay(previous, uptime=5)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_service_that_stayed_up_a_while_is_restarted_at_once_again() -> None:
    policy = RestartPolicy(initial_delay=1, max_delay=30, reset_after=60)
    assert policy.next_delay(30, uptime=59) == 30
    assert policy.next_delay(30, uptime=60) == 1


def test_the_supervisor_says_why_a_service_exited_and_starts_it_again(tmp_path: Path) -> None:
    crashing = ServiceProcess(
        name="crashing", argv=[sys.executable, "-c", "raise SystemExit(3)"], env={},
        log_path=tmp_path / "crashing.log", endpoint="",
    )
    stack = Stack(tmp_path, "", "", services={"crashing": crashing})
    said: list[str] = []
    later = [0.0]
    supervisor = Supervisor(stack, RestartPolicy(initial_delay=0.2), say=said.append,
                            clock=lambda: time.monotonic() + later[0])
    crashing.start()
    first = crashing.process
    assert first is not None
    first.wait()

    supervisor.check()
    assert len(said) == 1
    assert said[0].startswith("crashing exited (exit code 3) after ")
    assert said[0].endswith(f"s up; restarting in 0.2s; see {crashing.log_path}")
    supervisor.check()
    assert crashing.process is first, "not before the delay"
    later[0] += 0.2
    supervisor.check()
    assert crashing.process is not first and crashing.process is not None
    assert said[-1] == f"crashing restarted (pid {crashing.process.pid})"
    crashing.process.wait()

    supervisor.check()
    assert "restarting in 0.4s" in said[-1], "the second quick crash waits twice as long"
