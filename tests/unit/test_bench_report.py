"""The bench's table, JSON and open-loop series, worked out by hand."""

import json
from pathlib import Path

import pytest
from oms_devtools.bench_cpu import CpuWindow
from oms_devtools.bench_pipeline import Run
from oms_devtools.bench_report import Measure, table, write_json
from oms_devtools.bench_stats import Spread


def test_measures_are_met_in_their_direction() -> None:
    ratio = Measure("ratio", Spread.of([0.4, 0.5, 0.6]), "ratio", 0.5)
    p99 = Measure("p99", Spread.of([200.0, 300.0, 260.0]), "ms", 250, higher_is_better=False)
    assert ratio.met  # median 0.5 >= 0.5
    assert not p99.met  # median 260 > 250
    assert p99.as_dict() | {} == {"measure": "p99", "unit": "ms", "median": 260.0,
                                  "low": 200.0, "high": 300.0, "runs": 3, "goal": 250,
                                  "goal_is": "at most", "met": False}


def test_table_lines_up_one_row_per_measure(tmp_path: Path) -> None:
    measures = [Measure("released / pgbench", Spread.of([0.25, 0.3]), "ratio", 0.5),
                Measure("p99", Spread.of([120.0]), "ms", 250, False, 0)]
    lines = table(measures).splitlines()
    assert len(lines) == 4
    assert lines[2].split() == ["released", "/", "pgbench", "0.28", "0.25..0.30", "(2)",
                                ">=", "0.5", "no"]
    assert lines[3].split() == ["p99", "120", "120..120", "(1)", "<=", "250", "yes"]
    write_json(tmp_path / "out" / "bench.json", measures, {"conditions": {"cpus": 2}})
    written = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [row["met"] for row in written["table"]] == [False, True]
    assert written["conditions"] == {"cpus": 2}


def test_run_figures_and_series_by_second() -> None:
    run = Run(started=100.0)
    run.posted_at = {"a": 100.0, "b": 100.5, "c": 101.2}
    run.accepted_at = [100.1, 100.6, 101.3]
    run.released_at = {"a": 100.2, "b": 101.5, "c": 101.6}
    figures = run.figures()
    assert figures["orders"] == 3
    assert figures["released_per_s"] == pytest.approx(3 / 1.6)
    assert figures["accepted_per_s"] == pytest.approx(3 / 1.3)
    assert round(figures["p50_ms"]) == 400  # latencies 200, 1000, 400 ms
    series = run.series()
    assert [(s["posted"], s["released"]) for s in series] == [(2, 1), (1, 2)]
    assert round(series[0]["p50_ms"] or 0) == 200
    assert round(series[1]["p50_ms"] or 0) == 700  # 1000 and 400
    quiet = Run(started=0.0, posted_at={"a": 0.0}, released_at={"a": 2.5})
    assert [s["p99_ms"] for s in quiet.series()][:2] == [None, None]  # nothing released yet


def test_cpu_window_flags_a_busy_generator() -> None:
    quiet = CpuWindow({"generator": 1.0, "orders": 5.0}, wall_s=10.0)
    busy = CpuWindow({"generator": 2.5, "orders": 5.0}, wall_s=10.0)
    assert not quiet.generator_flagged and busy.generator_flagged
    assert busy.generator_share == 0.25
    assert busy.cores_used == 0.75
    assert busy.text().startswith("CPU s over 10.0 s: orders 5.0, generator 2.5 (0.75 of ")
    assert "generator at 25% of a core" in busy.text()


def test_a_buyer_waits_as_the_gateway_asks_within_bounds() -> None:
    from oms_devtools.bench_pipeline import _retry_after

    assert _retry_after("2") == 2.0
    assert _retry_after("60") == 5.0
    assert _retry_after("") == 1.0
    assert _retry_after("Wed, 21 Oct 2026 07:28:00 GMT") == 1.0
