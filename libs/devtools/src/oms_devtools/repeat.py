"""``make test-repeat N=5``: proves the suite steady rather than lucky.

Runs the integration and end-to-end layers N times in a row while a second copy of the whole
suite runs beside them in a loop, on servers of its own (embedded ones on other free ports,
or containers), the way a busy CI machine or a colleague's suite would load this one. Prints
each run's time and result and fails if any run failed, the companion's included; the
companion run still going when the last run ends is interrupted and not counted.

Each run writes its whole output to ``<out>/<run>.log`` and keeps its temporary files apart
(``--basetemp``), so runs side by side never share a directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LAYERS = ("tests/integration", "tests/e2e")
WHOLE_SUITE = ("tests",)
# Given to the suite, these make every run share one server: the companion must not.
SHARED_SERVER_VARIABLES = ("OMS_TEST_DATABASE_URL", "OMS_TEST_NATS_URL")


@dataclass(frozen=True)
class Result:
    name: str
    returncode: int
    seconds: float
    summary: str
    log: Path
    interrupted: bool = False

    @property
    def passed(self) -> bool:
        return self.returncode == 0

    def outcome(self) -> str:
        verdict = "stopped" if self.interrupted else "passed" if self.passed else "FAILED"
        return f"{verdict} in {self.seconds:.0f}s ({self.summary}); log {self.log}"


def _summary(log: Path) -> str:
    lines = [line.strip(" =") for line in log.read_text(errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "no output")


def _start(paths: tuple[str, ...], out: Path, name: str,
           env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    log = out / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider",
             f"--basetemp={out / name}"],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )
    return process, log


def run(paths: tuple[str, ...], out: Path, name: str) -> Result:
    started = time.monotonic()
    process, log = _start(paths, out, name)
    returncode = process.wait()
    return Result(name, returncode, time.monotonic() - started, _summary(log), log)


class Companion:
    """The whole suite in a loop, in a thread, until stopped."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.results: list[Result] = []
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._env = {k: v for k, v in os.environ.items() if k not in SHARED_SERVER_VARIABLES}
        self._thread = threading.Thread(target=self._loop, name="companion", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        number = 0
        while not self._stopping.is_set():
            number += 1
            name = f"companion-{number}"
            started = time.monotonic()
            self._process, log = _start(WHOLE_SUITE, self.out, name, self._env)
            returncode = self._process.wait()
            self.results.append(Result(name, returncode, time.monotonic() - started,
                                       _summary(log), log, self._stopping.is_set()))

    def stop(self, grace: float = 120.0) -> list[Result]:
        """Interrupts the run in progress as Ctrl-C would, so its fixtures stop its servers."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
        self._thread.join()
        return self.results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-companion", dest="companion", action="store_false",
                        help="run the layers alone, with no suite beside them")
    parser.add_argument("--out", type=Path, default=Path(".oms/test-repeat"))
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    companion = Companion(out) if args.companion else None
    if companion:
        print(f"companion: the whole suite in a loop beside the runs; logs in {out}", flush=True)
    results: list[Result] = []
    try:
        for number in range(1, args.runs + 1):
            result = run(LAYERS, out, f"run-{number}")
            results.append(result)
            print(f"run {number} of {args.runs}: {result.outcome()}", flush=True)
    finally:
        companion_results = companion.stop() if companion else []
    for result in companion_results:
        print(f"{result.name}: {result.outcome()}", flush=True)

    failed = [r.name for r in results + companion_results if not r.passed and not r.interrupted]
    total = sum(r.seconds for r in results)
    print(f"{len(results)} runs of {' '.join(LAYERS)} in {total:.0f}s; "
          + (f"FAILED: {', '.join(failed)}" if failed else "all passed"), flush=True)
    sys.exit(1 if failed or len(results) < args.runs else 0)


if __name__ == "__main__":
    main()
