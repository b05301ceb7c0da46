"""Hot-SKU benchmark: many buyers for one SKU at one node, the peak-season worst case.

1. Starts the inventory service as its own process (as in production) on a fresh database.
2. Each run creates one node and one SKU and receives stock for 90 % of the buyers; ``buyers``
   concurrent publishers send ``orders`` one-unit ``OrderCreated`` events to JetStream (encoded
   before the clock starts); the clock runs from the first publish to the last
   ``StockAllocated``. The figure is units reserved per second: a refusal reserves nothing.
3. Checks that nothing was oversold: the level's reserved units equal the stock, never more
   than on hand, equal to the reservation rows, to the ledger and to the allocated events;
   every other buyer was refused.
4. Between runs, the baseline: pgbench doing inventory's own statements for orders that all
   want one SKU at one node, on a database built by inventory's migrations
   (``bench_baseline``), one order per transaction and as many per transaction as one fetch
   of the service's consumer brings. Stock is unlimited there, so every order is a unit.

``python -m oms_devtools.bench_hot_sku`` runs it on its own embedded (durable) PostgreSQL and
NATS and prints the figures; ``run()`` is what ``make bench`` calls with its servers.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import nats
import psutil
import psycopg
from google.type import latlng_pb2
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2, orders_pb2
from oms_platform import bus
from oms_platform.events import encode

from oms_devtools import bench_baseline
from oms_devtools.bench_cpu import CpuMeter, postmaster_pid
from oms_devtools.bench_stats import Spread, ratios
from oms_devtools.servers import (
    EmbeddedNats,
    EmbeddedPostgres,
    drop_database,
    ensure_database,
    free_port,
)
from oms_devtools.stack import ServiceProcess, Stack

LOS_ANGELES = (34.0522, -118.2437)
RENO = (39.5296, -119.8138)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _start_inventory(database_url: str, nats_url: str, state_dir: Path) -> ServiceProcess:
    env = Stack(state_dir, database_url, nats_url)._env(
        OMS_DATABASE_URL=database_url, OMS_NATS_URL=nats_url)
    subprocess.run([sys.executable, "-m", "oms_inventory", "migrate"], env=env, check=True,
                   capture_output=True)
    port = free_port()
    service = ServiceProcess(
        name="inventory",
        argv=[sys.executable, "-m", "oms_inventory"],
        env={**env, "OMS_GRPC_HOST": "127.0.0.1", "OMS_GRPC_PORT": str(port)},
        log_path=state_dir / "logs" / "inventory-hot-sku.log",
        endpoint=f"127.0.0.1:{port}",
    )
    service.start()
    deadline = time.monotonic() + 60
    while not Stack._ready(service):
        if not service.alive() or time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"inventory did not start:\n{service.log_tail()}")
        time.sleep(0.2)
    return service


async def _stock_one_sku(endpoint: str, units: int) -> tuple[str, str]:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        node_id = f"hot-{secrets.token_hex(3)}"
        await stub.CreateFulfilmentNode(inventory_pb2.CreateFulfilmentNodeRequest(
            fulfilment_node=inventory_pb2.FulfilmentNode(
                node_id=node_id, display_name="Reno", type=inventory_pb2.NODE_TYPE_WAREHOUSE,
                address=common_pb2.Address(
                    recipient="Reno DC", address_lines=["1 Dock Rd"], locality="Reno",
                    postal_code="89501", region_code="US",
                    location=latlng_pb2.LatLng(latitude=RENO[0], longitude=RENO[1])))))
        sku = f"HOT-{secrets.token_hex(4).upper()}"
        await stub.CreateProduct(inventory_pb2.CreateProductRequest(
            product=inventory_pb2.Product(sku=sku, title="Hot item")))
        await stub.AdjustStock(inventory_pb2.AdjustStockRequest(
            node_id=node_id, sku=sku, delta=units,
            reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT))
        return node_id, sku


def _order(sku: str) -> events_pb2.OrderCreated:
    event = events_pb2.OrderCreated(
        order=f"orders/{uuid.uuid4().hex}", channel="bench",
        external_order_id=uuid.uuid4().hex,
        shipping_address=common_pb2.Address(
            recipient="Buyer", address_lines=["1 Main St"], locality="Los Angeles",
            administrative_area="CA", postal_code="90012", region_code="US",
            location=latlng_pb2.LatLng(latitude=LOS_ANGELES[0], longitude=LOS_ANGELES[1])),
        lines=[orders_pb2.OrderLine(line_id="1", sku=sku, quantity=1)],
        payment_status=orders_pb2.PAYMENT_STATUS_PAID,
    )
    event.create_time.GetCurrentTime()
    return event


async def _buy(nats_url: str, sku: str, orders: int, buyers: int) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_stream(js, "orders")
    decided: dict[str, str] = {}
    last_allocated = 0.0
    done = asyncio.Event()
    names: set[str] = set()

    async def on_outcome(msg: Any) -> None:
        nonlocal last_allocated
        order = (msg.headers or {}).get("ce-subject", "")
        if order in names and order not in decided:
            decided[order] = msg.subject.rsplit(".", 1)[-1]
            if decided[order] == "stock_allocated":
                last_allocated = time.perf_counter()
            if len(decided) >= orders:
                done.set()

    for subject in ("oms.inventory.stock_allocated", "oms.inventory.allocation_failed",
                    "oms.inventory.stock_backordered"):
        await nc.subscribe(subject, cb=on_outcome)
    events = [_order(sku) for _ in range(orders)]
    names.update(e.order for e in events)
    envelopes = iter([encode(e, aggregate_id=e.order, source="/oms/bench") for e in events])

    async def buyer() -> None:
        for envelope in envelopes:
            await js.publish(envelope.subject, envelope.payload, headers=envelope.headers)

    started = time.perf_counter()
    await asyncio.gather(*(buyer() for _ in range(buyers)))
    published = time.perf_counter()
    await asyncio.wait_for(done.wait(), timeout=600)
    finished = time.perf_counter()
    await nc.close()
    outcomes = list(decided.values())
    return {"elapsed": finished - started, "publish_elapsed": published - started,
            "reserving_elapsed": last_allocated - started,
            "allocated": outcomes.count("stock_allocated"),
            "refused": outcomes.count("allocation_failed"),
            "backordered": outcomes.count("stock_backordered")}


def _check_no_oversell(database_url: str, node_id: str, sku: str, stock: int,
                       measured: dict[str, Any]) -> int:
    with psycopg.connect(_libpq(database_url)) as conn:
        on_hand, reserved = conn.execute(
            "SELECT on_hand, reserved FROM stock_levels WHERE node_id = %s AND sku = %s",
            (node_id, sku)).fetchone() or (0, 0)
        rows, units = conn.execute(
            "SELECT count(*), coalesce(sum(quantity), 0) FROM reservations WHERE sku = %s",
            (sku,)).fetchone() or (0, 0)
        ledger = conn.execute(
            "SELECT coalesce(sum(reserved_delta), 0) FROM stock_ledger WHERE sku = %s",
            (sku,)).fetchone()
    assert on_hand == stock, f"on hand {on_hand} != received {stock}"
    assert reserved <= on_hand, f"oversold: {reserved} reserved of {on_hand}"
    assert reserved == units == rows == measured["allocated"], (
        f"reserved {reserved}, reservation units {units} in {rows} rows, "
        f"{measured['allocated']} allocated events")
    assert ledger is not None and ledger[0] == reserved, "the ledger disagrees"
    assert reserved == stock, f"only {reserved} of {stock} units were reserved"
    return int(reserved)


def _baseline(postgres: EmbeddedPostgres, dsn: str, batch: int, clients: int,
              seconds: int, shapes: dict[str, bench_baseline.EventShape]) -> float:
    """Units/s of inventory's statements for one SKU at one node, ``batch`` orders a
    transaction."""
    scripts = {"inventory": bench_baseline.inventory_script(batch, shapes, skus=1)}
    return bench_baseline.run(postgres, {"inventory": dsn}, scripts, batch=batch,
                              clients=clients, seconds=seconds).orders_per_s


async def run(postgres: EmbeddedPostgres, nats_url: str, *, nats_pid: int | None = None,
              orders: int = 1000, buyers: int = 64, runs: int = 3, pgbench_seconds: int = 5,
              pgbench_clients: int = 8, batch: int = 128,
              state_dir: Path | None = None) -> dict[str, Any]:
    """``runs`` service runs, each followed by the one-by-one and the batched baseline, on
    the PostgreSQL server ``postgres`` (its own databases are created there) and the NATS at
    ``nats_url``."""
    stock = orders * 9 // 10
    database_url = postgres.url()
    service_db = "bench_hot_sku"
    drop_database(database_url, service_db)
    service_url = ensure_database(database_url, service_db)
    env = Stack(Path(tempfile.gettempdir()), database_url, nats_url)._env()
    dsns = await asyncio.to_thread(bench_baseline.prepare, database_url, env)
    figures: dict[str, Any] = {"orders": orders, "buyers": buyers, "stock": stock,
                               "batch": batch, "pgbench_clients": pgbench_clients,
                               "runs": []}
    with tempfile.TemporaryDirectory(prefix="oms-hot-sku-") as scratch:
        service = _start_inventory(service_url, nats_url, state_dir or Path(scratch))
        assert service.process is not None
        pids = {"inventory": service.process.pid,
                "postgres": postmaster_pid(postgres.data_dir)}
        if nats_pid is not None:
            pids["nats"] = nats_pid
        meter = CpuMeter(lambda: pids)
        try:
            for _ in range(runs):
                node_id, sku = await _stock_one_sku(service.endpoint, stock)
                with meter.window() as cpu:
                    measured = await _buy(nats_url, sku, orders, buyers)
                reserved = _check_no_oversell(service_url, node_id, sku, stock, measured)
                one_by_one = await asyncio.to_thread(
                    _baseline, postgres, dsns["inventory"], 1, pgbench_clients,
                    pgbench_seconds, {})
                batched = await asyncio.to_thread(
                    _baseline, postgres, dsns["inventory"], batch, pgbench_clients,
                    pgbench_seconds, {})
                figures["runs"].append({
                    "reserved": reserved, "refused": measured["refused"],
                    "units_per_s": reserved / measured["reserving_elapsed"],
                    "decided_per_s": orders / measured["elapsed"],
                    "baseline_one_by_one_per_s": one_by_one,
                    "baseline_batched_per_s": batched,
                    "cpu": cpu.as_dict(), "cpu_text": cpu.text()})
        finally:
            service.stop()
    rows = figures["runs"]
    figures["units_per_s"] = Spread.of(r["units_per_s"] for r in rows)
    figures["baseline_batched_per_s"] = Spread.of(r["baseline_batched_per_s"] for r in rows)
    figures["baseline_one_by_one_per_s"] = Spread.of(
        r["baseline_one_by_one_per_s"] for r in rows)
    figures["ratio_batched"] = ratios([r["units_per_s"] for r in rows],
                                      [r["baseline_batched_per_s"] for r in rows])
    figures["ratio_one_by_one"] = ratios([r["units_per_s"] for r in rows],
                                         [r["baseline_one_by_one_per_s"] for r in rows])
    return figures


def report(figures: dict[str, Any]) -> str:
    lines = [
        f"  hot SKU: {figures['orders']} one-unit orders for one SKU at one node from "
        f"{figures['buyers']} concurrent publishers, {figures['stock']} units in stock; "
        f"{len(figures['runs'])} runs, each next to its baselines",
        f"    units reserved /s (service)          {figures['units_per_s'].text()}",
        f"    pgbench, inventory's SQL, 1 a tx     {figures['baseline_one_by_one_per_s'].text()}",
        f"    pgbench, same, {figures['batch']} a tx          "
        f"{figures['baseline_batched_per_s'].text()}",
        f"    ratio to the batched baseline        {figures['ratio_batched'].text(2)}",
        f"    ratio to the one-by-one baseline     {figures['ratio_one_by_one'].text(2)}",
    ]
    for i, r in enumerate(figures["runs"], 1):
        lines.append(f"    run {i}: {r['reserved']} reserved, {r['refused']} refused, none "
                     f"oversold; {r['decided_per_s']:.0f} decided/s; {r['cpu_text']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--buyers", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pgbench-seconds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oms-hot-sku-") as scratch:
        root = Path(scratch)
        with EmbeddedPostgres(root / "postgres", durable=True) as postgres, \
                EmbeddedNats(root / "nats") as nats_server:
            figures = asyncio.run(run(postgres, nats_server.url, orders=args.orders,
                                      buyers=args.buyers, runs=args.runs,
                                      pgbench_seconds=args.pgbench_seconds, state_dir=root))
    print(f"\nOMS hot-SKU bench: PostgreSQL durable (fsync on); {psutil.cpu_count()} CPUs")
    print(report(figures))


if __name__ == "__main__":
    main()
