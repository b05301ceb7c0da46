"""``make bench``: orders through the whole suite, next to PostgreSQL alone doing the same.

1. Starts a durable embedded PostgreSQL (fsync on, as in production) with
   ``pg_stat_statements`` loaded, NATS and the suite.
2. Closed loop, ``--runs`` times: ``--orders`` paid orders posted to the gateway,
   ``--concurrency`` in flight, each followed until it is released to its warehouse. After
   each run, the pgbench baseline (``bench_baseline``: the services' schema from their own
   migrations, their statements as ``pg_stat_statements`` saw them) one order per transaction
   and batched as one fetch of the consumers is. The first run of each side is the one whose
   statements are printed per order, side by side.
3. Open loop, ``--open-runs`` times: orders posted at half the closed loop's median released
   rate for ``--open-seconds``; post -> released latency, and a plot of it over time.
4. The gateway under ``--burst-buyers`` concurrent buyers of one SKU: accepted orders/s.
5. The hot SKU (``bench_hot_sku``): units reserved/s next to inventory's own SQL in pgbench.
6. The rate shop (``bench_shipping``), labels (``bench_labels``), fulfilment's pick lists per
   strategy and released -> shipped (``bench_fulfilment``), the outbox relay draining a
   backlog, and the services' resident memory.

Every figure is printed with the CPU seconds each process spent on it, and the median and
range of its runs. The table of issue 14 is printed last and written with every figure to
``.oms/bench/bench.json``, the open loop's plot to ``.oms/bench/open-loop.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
from oms.orders.v1 import events_pb2
from oms_platform import bus
from oms_platform.consumer import EventConsumer
from oms_platform.db import create_engine, create_metadata
from oms_platform.events import encode
from oms_platform.outbox import OutboxRelay
from sqlalchemy import insert

from oms_devtools import (
    bench_baseline,
    bench_fulfilment,
    bench_hot_sku,
    bench_labels,
    bench_pipeline,
    bench_report,
    bench_shipping,
    bench_stats,
)
from oms_devtools.bench_cpu import CpuMeter, postmaster_pid
from oms_devtools.bench_stats import Spread, ratios
from oms_devtools.servers import EmbeddedNats, EmbeddedPostgres, ensure_database
from oms_devtools.stack import UNTHROTTLED, Stack

STATEMENT_STATS = {"shared_preload_libraries": "pg_stat_statements",
                   "pg_stat_statements.track_utility": "on"}
FETCH_BATCH = int(inspect.signature(EventConsumer.__init__).parameters["batch_size"].default)
OUT = Path(".oms/bench")


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def _statements(dsn: str, labels: dict[str, str]) -> list[tuple[str, str, int, int, int]]:
    """``pg_stat_statements`` of the databases in ``labels``, labelled, since the last reset."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT d.datname, s.query, s.calls, s.rows, s.wal_bytes::bigint"
            " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid").fetchall()
    return [(labels[db], q, c, r, w) for db, q, c, r, w in rows if db in labels]


def _reset_statements(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


class Bench:
    """One ``make bench``: the servers, the suite, and every figure's runs."""

    def __init__(self, args: argparse.Namespace, postgres: EmbeddedPostgres,
                 nats_server: EmbeddedNats, stack: Stack) -> None:
        self.args = args
        self.postgres = postgres
        self.nats = nats_server
        self.stack = stack
        self.dsn = postgres.libpq_dsn()
        self.details: dict[str, Any] = {}

    def pids(self) -> dict[str, int]:
        pids = {name: s.process.pid for name, s in self.stack.services.items()
                if s.process is not None and s.alive()}
        pids["postgres"] = postmaster_pid(self.postgres.data_dir)
        if self.nats._proc is not None:
            pids["nats"] = self.nats._proc.pid
        return pids

    def baseline(self, dsns: dict[str, str], batch: int, shapes: dict[str, Any],
                 meter: CpuMeter) -> tuple[float, str]:
        scripts = bench_baseline.pipeline_scripts(batch, shapes)
        with meter.window() as cpu:
            result = bench_baseline.run(self.postgres, dsns, scripts, batch=batch,
                                        clients=self.args.pgbench_clients,
                                        seconds=self.args.pgbench_seconds)
        cpu.seconds["pgbench"] = result.cpu_s
        sides = ", ".join(f"{k} {v:.0f}/s" for k, v in result.per_side.items())
        return result.orders_per_s, f"{sides}; {cpu.text()}"

    def closed_loop(self, key: str, skus: list[str]) -> dict[str, Any]:
        """Runs of the suite at saturation, each followed by both baselines."""
        args, meter = self.args, CpuMeter(self.pids)
        env = self.stack._env()
        dsns = bench_baseline.prepare(self.postgres.url(), env)
        pipeline_dsns = {s: self.postgres.libpq_dsn(f"bench_{s}")
                         for s in bench_baseline.SERVICES}
        runs: list[dict[str, Any]] = []
        shapes: dict[str, Any] = {}
        for i in range(args.runs):
            if i == 0:
                _reset_statements(self.dsn)
            with meter.window() as cpu:
                run = asyncio.run(bench_pipeline.closed_loop(
                    self.stack, self.nats.url, key, skus, args.orders, args.concurrency))
            figures = run.figures() | {"cpu": cpu.as_dict()}
            _say(f"closed loop {i + 1}: {figures['released_per_s']:.1f} released/s, "
                 f"p50 {figures['p50_ms']:.0f} ms; {cpu.text()}")
            if i == 0:
                self.details["statements_pipeline"] = _statements(
                    self.dsn, {f"bench_{s}": s for s in
                               ("orders", "inventory", "gateway", "fulfilment", "shipping")})
                shapes = bench_baseline.event_shapes(pipeline_dsns)
                _reset_statements(self.dsn)
            one, one_text = self.baseline(dsns, 1, shapes, meter)
            if i == 0:
                self.details["statements_one_by_one"] = _statements(
                    self.dsn, {bench_baseline.database(s): s for s in bench_baseline.SERVICES})
                _reset_statements(self.dsn)
            batched, batched_text = self.baseline(dsns, FETCH_BATCH, shapes, meter)
            if i == 0:
                self.details["statements_batched"] = _statements(
                    self.dsn, {bench_baseline.database(s): s for s in bench_baseline.SERVICES})
                self.details["baseline_orders"] = {"one_by_one": one, "batched": batched}
            _say(f"  pgbench one by one {one:.1f} orders/s ({one_text})")
            _say(f"  pgbench {FETCH_BATCH} a fetch {batched:.1f} orders/s ({batched_text})")
            runs.append(figures | {"pgbench_one_by_one": one, "pgbench_batched": batched})
        self.details["first_run_orders"] = runs[0]["orders"]
        return {"runs": runs}

    def open_loop(self, key: str, skus: list[str], rate: float) -> dict[str, Any]:
        meter, runs = CpuMeter(self.pids), []
        for i in range(self.args.open_runs):
            with meter.window() as cpu:
                run = asyncio.run(bench_pipeline.open_loop(
                    self.stack, self.nats.url, key, skus, rate, self.args.open_seconds))
            figures = run.figures() | {"cpu": cpu.as_dict(), "series": run.series()}
            _say(f"open loop {i + 1} at {rate:.1f}/s: p50 {figures['p50_ms']:.0f} ms, "
                 f"p99 {figures['p99_ms']:.0f} ms; {cpu.text()}")
            runs.append(figures)
        return {"rate": rate, "runs": runs}

    def bursts(self, key: str) -> dict[str, Any]:
        meter, runs = CpuMeter(self.pids), []
        buyers = self.args.burst_buyers
        for i in range(self.args.bursts):
            sku = asyncio.run(bench_pipeline.stock(
                self.stack.services["inventory"].endpoint, buyers, skus=1))[0]
            with meter.window() as cpu:
                run = asyncio.run(bench_pipeline.burst(self.stack, self.nats.url, key, sku,
                                                       buyers))
            figures = run.figures() | {"cpu": cpu.as_dict()}
            _say(f"burst {i + 1}: {buyers} buyers of one SKU, "
                 f"{figures['accepted_per_s']:.1f} accepted/s, {run.refused} refused, "
                 f"{run.retries} retries after {run.statuses or 'no'} replies, "
                 f"released {len(run.released_at)}; {cpu.text()}")
            runs.append(figures)
        return {"buyers": buyers, "runs": runs}


async def measure_relay(database_url: str, nats_url: str, events: int) -> float:
    """Events/s the outbox relay publishes from a backlog (as after a NATS outage)."""
    metadata = create_metadata()
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        rows = []
        for i in range(events):
            envelope = encode(events_pb2.OrderStatusChanged(order=f"orders/bench-{i}"),
                              aggregate_id=f"orders/bench-{i}", source="/oms/bench")
            rows.append({"event_id": envelope.event_id, "subject": envelope.subject,
                         "headers": envelope.headers, "payload": envelope.payload})
        await conn.execute(insert(metadata.tables["outbox"]), rows)
    nc = await bus.connect(nats_url, name="oms-bench-relay")
    js = nc.jetstream()
    await bus.ensure_stream(js, "orders")
    relay = OutboxRelay(engine, metadata, js)
    started = time.perf_counter()
    task = asyncio.create_task(relay.run())
    while relay.published < events:  # noqa: ASYNC110 - sampling a counter, not a signal
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await relay.stop()
    await task
    await nc.close()
    await engine.dispose()
    return events / elapsed


def _rss_mib(stack: Stack) -> dict[str, float]:
    sizes = {}
    for name, service in stack.services.items():
        if service.process is not None and service.alive():
            sizes[name] = psutil.Process(service.process.pid).memory_info().rss / 2**20
    return sizes


def _statement_report(details: dict[str, Any]) -> str:
    anchors = {"orders": "INSERT orders", "inventory": "INSERT order_allocations"}
    sides = [bench_stats.per_order(details[k], anchors) for k in
             ("statements_pipeline", "statements_one_by_one", "statements_batched")]
    comparisons = bench_stats.compare(sides)
    others = bench_stats.database_totals(
        [r for r in details["statements_pipeline"] if r[0] not in anchors],
        details["first_run_orders"])
    mismatched = [f"{c.key[0]} {c.key[1]}" for c in comparisons if not c.matches]
    lines = [
        "  PostgreSQL per order (pg_stat_statements; the first run of each side; an order is "
        "a row of INSERT orders / INSERT order_allocations)",
        bench_stats.comparison_table(
            comparisons, ["pipeline", "pgbench 1 a tx", f"pgbench {FETCH_BATCH} a tx"]),
        "    = judged: each write changes as many rows per order in the pipeline and the "
        "one-by-one baseline, within 25 %" if not mismatched else
        "    ! rows per order differ on: " + ", ".join(mismatched),
        f"    (the batched side is not judged: {FETCH_BATCH} orders of 20 SKUs touch each "
        "level once, where the pipeline's smaller fetches touch it per few orders)",
        "    not in the baseline (the pipeline's other databases): " + ", ".join(
            f"{db} {v.calls:.2f} calls {v.rows:.2f} rows {v.wal_bytes:.0f} WAL B"
            for db, v in others.items()),
    ]
    return "\n".join(lines)


def _measures(closed: dict[str, Any], open_loop: dict[str, Any], bursts: dict[str, Any],
              hot: dict[str, Any], memory: dict[str, float]) -> list[bench_report.Measure]:
    runs = closed["runs"]
    released = [r["released_per_s"] for r in runs]
    return [
        bench_report.Measure(
            f"released orders/s / pgbench {FETCH_BATCH} a fetch", ratios(
                released, [r["pgbench_batched"] for r in runs]), "ratio", 0.5),
        bench_report.Measure(
            "released orders/s / pgbench 1 a tx", ratios(
                released, [r["pgbench_one_by_one"] for r in runs]), "ratio", 0.5),
        bench_report.Measure(
            f"open loop at {open_loop['rate']:.1f}/s: post -> released p99", Spread.of(
                r["p99_ms"] for r in open_loop["runs"]), "ms", 250, False, 0),
        bench_report.Measure(
            f"hot SKU units reserved/s / pgbench {hot['batch']} a tx", hot["ratio_batched"],
            "ratio", 0.7),
        bench_report.Measure(
            f"gateway accepted orders/s, {bursts['buyers']} buyers of one SKU", Spread.of(
                r["accepted_per_s"] for r in bursts["runs"]), "orders/s", 2 * 57, True, 1),
        bench_report.Measure(
            "RSS of the largest service after the run", Spread.of([max(memory.values())]),
            "MiB", 150, False, 0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="closed-loop runs (and baselines)")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pgbench-clients", type=int, default=16)
    parser.add_argument("--pgbench-seconds", type=int, default=8)
    parser.add_argument("--open-runs", type=int, default=3)
    parser.add_argument("--open-seconds", type=int, default=20)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--burst-buyers", type=int, default=1000)
    parser.add_argument("--hot-sku-runs", type=int, default=3)
    parser.add_argument("--hot-sku-orders", type=int, default=1000)
    parser.add_argument("--hot-sku-buyers", type=int, default=64)
    parser.add_argument("--relay-events", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="oms-bench-") as scratch:
        root = Path(scratch)
        with EmbeddedPostgres(root / "postgres", durable=True,
                              settings=STATEMENT_STATS) as postgres, \
                EmbeddedNats(root / "nats") as nats_server:
            with psycopg.connect(postgres.libpq_dsn(), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            stack = Stack(root, postgres.url(), nats_server.url, database_prefix="bench",
                          extra_env=dict(UNTHROTTLED))
            bench = Bench(args, postgres, nats_server, stack)
            try:
                stack.start()
                key = stack.create_partner(f"bench-{uuid.uuid4().hex[:8]}", "sales-channel",
                                           channels=("bench",))
                skus = asyncio.run(bench_pipeline.stock(
                    stack.services["inventory"].endpoint, 1_000_000))
                asyncio.run(bench_pipeline.closed_loop(stack, nats_server.url, key, skus,
                                                       200, args.concurrency))  # warm-up
                _say("warmed up")
                closed = bench.closed_loop(key, skus)
                rate = Spread.of(r["released_per_s"] for r in closed["runs"]).median / 2
                open_loop = bench.open_loop(key, skus, rate)
                bursts = bench.bursts(key)
                memory = _rss_mib(stack)
            finally:
                stack.stop()
            _say("hot SKU")
            hot = asyncio.run(bench_hot_sku.run(
                postgres, nats_server.url, nats_pid=bench.pids().get("nats"),
                orders=args.hot_sku_orders, buyers=args.hot_sku_buyers,
                runs=args.hot_sku_runs, batch=FETCH_BATCH, state_dir=root))
            _say("rate shop, labels, relay")
            rate_shop = asyncio.run(bench_shipping.run(postgres.url(), nats_server.url,
                                                       state_dir=root))
            labels = asyncio.run(bench_labels.run(postgres.url(), nats_server.url,
                                                  state_dir=root))
            _say("fulfilment")
            fulfilment = asyncio.run(bench_fulfilment.run(postgres.url(), nats_server.url,
                                                          state_dir=root))
            relay_rate = asyncio.run(measure_relay(
                ensure_database(postgres.url(), "bench_relay"), nats_server.url,
                args.relay_events))

    runs = closed["runs"]
    print(f"\nOMS bench: {psutil.cpu_count()} CPUs, PostgreSQL durable (fsync on), 20 SKUs x 2 "
          f"nodes, 1 line an order; figures are medians (range) of their runs")
    print(f"  closed loop, {args.orders} orders x {args.runs} runs, {args.concurrency} in "
          "flight:")
    for name, unit in (("accepted_per_s", "accepted /s"), ("released_per_s", "released /s"),
                       ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
        print(f"    {unit:<28} {Spread.of(r[name] for r in runs).text()}")
    print(f"    pgbench 1 a tx, orders/s     "
          f"{Spread.of(r['pgbench_one_by_one'] for r in runs).text()}")
    print(f"    pgbench {FETCH_BATCH} a tx, orders/s   "
          f"{Spread.of(r['pgbench_batched'] for r in runs).text()}")
    print(_statement_report(bench.details))
    print(f"  open loop at {rate:.1f} orders/s for {args.open_seconds} s x {args.open_runs}:")
    for name in ("p50_ms", "p95_ms", "p99_ms"):
        print(f"    {name:<28} {Spread.of(r[name] for r in open_loop['runs']).text(0)}")
    print(bench_hot_sku.report(hot))
    print(bench_shipping.report(rate_shop))
    print(bench_labels.report(labels))
    print(bench_fulfilment.report(fulfilment))
    print(f"  outbox relay, {args.relay_events} backlog  {relay_rate:8.1f} events/s published to "
          "JetStream and marked")
    print("  resident memory after the run    " +
          ", ".join(f"{name} {mib:.0f} MiB" for name, mib in memory.items()))
    measures = _measures(closed, open_loop, bursts, hot, memory)
    print("\nIssue 14's table (a machine shared with other work: read the ranges)")
    print(bench_report.table(measures))
    details = {"conditions": {"cpus": psutil.cpu_count(), "args": vars(args),
                              "fetch_batch": FETCH_BATCH},
               "closed_loop": closed, "open_loop": open_loop, "bursts": bursts,
               "hot_sku": hot, "rate_shop": rate_shop, "labels": labels,
               "fulfilment": fulfilment,
               "relay_events_per_s": relay_rate, "rss_mib": memory,
               "statements": {k: v for k, v in bench.details.items()
                              if k.startswith("statements_")}}
    bench_report.write_json(args.out / "bench.json", measures, details)
    slowest = max(open_loop["runs"], key=lambda r: r["p99_ms"])
    bench_report.plot(args.out / "open-loop.png", slowest["series"], rate)
    print(f"\n  written: {args.out / 'bench.json'}, {args.out / 'open-loop.png'} (the open-loop "
          "run with the highest p99)")


if __name__ == "__main__":
    main()
