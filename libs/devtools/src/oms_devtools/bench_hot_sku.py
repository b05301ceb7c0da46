"""Hot-SKU benchmark: many buyers for one SKU at one node, the peak-season worst case.

1. Starts the inventory service as its own process (as in production) on a fresh database,
   creates one node and one SKU, and receives stock for 90 % of the buyers.
2. ``buyers`` concurrent publishers send ``orders`` one-unit ``OrderCreated`` events to
   JetStream; the clock runs from the first publish to the last ``StockAllocated`` or
   ``AllocationFailed`` the service publishes.
3. Checks that nothing was oversold: the level's reserved units equal the stock, never more
   than on hand, equal to the reservation rows and to the allocated events; every other
   buyer was refused.
4. Runs pgbench on the same server, with as many clients as buyers, against one row: per
   transaction the plain conditional UPDATE a naive service issues per order, plus the
   ledger row (every reservation is audited in our service too, so a comparison without it
   would flatter the naive way). The service does strictly more per order than that script:
   inbox row, order row, reservation row, outbox events, a stock-level event.

``python -m oms_devtools.bench_hot_sku`` runs it on its own embedded (durable) PostgreSQL and
NATS and prints the figures; ``run()`` is what ``make bench`` calls with its servers.
"""

from __future__ import annotations

import argparse
import asyncio
import re
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

from oms_devtools.servers import (
    EmbeddedNats,
    EmbeddedPostgres,
    drop_database,
    ensure_database,
    free_port,
)
from oms_devtools.stack import ServiceProcess, Stack

PGBENCH_SCHEMA = """
DROP TABLE IF EXISTS hot_stock, hot_ledger;
CREATE TABLE hot_stock (node_id text, sku text, on_hand bigint, reserved bigint,
  safety_stock bigint DEFAULT 0, PRIMARY KEY (node_id, sku),
  CHECK (reserved >= 0 AND on_hand >= reserved));
CREATE TABLE hot_ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, node_id text,
  sku text, kind text, on_hand_delta bigint, reserved_delta bigint, reference text,
  at timestamptz DEFAULT now());
INSERT INTO hot_stock VALUES ('hot-node', 'HOT-SKU', 1000000000, 0, 0);
"""

PGBENCH_SCRIPT = """
BEGIN;
UPDATE hot_stock SET reserved = reserved + 1
  WHERE node_id = 'hot-node' AND sku = 'HOT-SKU' AND on_hand - reserved - safety_stock >= 1;
INSERT INTO hot_ledger (node_id, sku, kind, on_hand_delta, reserved_delta, reference)
  VALUES ('hot-node', 'HOT-SKU', 'RESERVATION', 0, 1, 'orders/' || :client_id);
COMMIT;
"""

LOS_ANGELES = (34.0522, -118.2437)
RENO = (39.5296, -119.8138)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def run_pgbench(database_url: str, pgbench: Path, psql: Path, clients: int,
                seconds: int) -> float:
    """Transactions/s of the naive per-order reservation against one row."""
    dsn = _libpq(database_url)
    subprocess.run([str(psql), "-q", "-v", "ON_ERROR_STOP=1", dsn], input=PGBENCH_SCHEMA,
                   text=True, check=True, capture_output=True)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT)
    try:
        result = subprocess.run(
            [str(pgbench), "-n", "-c", str(clients), "-j", "2", "-T", str(seconds),
             "-f", script.name, dsn],
            text=True, capture_output=True,
        )
    finally:
        Path(script.name).unlink()
    match = re.search(r"tps = ([\d.]+)", result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"pgbench printed no tps:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1))


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
    done = asyncio.Event()
    names: set[str] = set()

    async def on_outcome(msg: Any) -> None:
        order = (msg.headers or {}).get("ce-subject", "")
        if order in names:
            decided.setdefault(order, msg.subject.rsplit(".", 1)[-1])
            if len(decided) >= orders:
                done.set()

    for subject in ("oms.inventory.stock_allocated", "oms.inventory.allocation_failed",
                    "oms.inventory.stock_backordered"):
        await nc.subscribe(subject, cb=on_outcome)
    events = [_order(sku) for _ in range(orders)]
    names.update(e.order for e in events)
    queue: asyncio.Queue[events_pb2.OrderCreated] = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)

    async def buyer() -> None:
        while not queue.empty():
            event = queue.get_nowait()
            envelope = encode(event, aggregate_id=event.order, source="/oms/bench")
            await js.publish(envelope.subject, envelope.payload, headers=envelope.headers)

    started = time.perf_counter()
    await asyncio.gather(*(buyer() for _ in range(buyers)))
    published = time.perf_counter()
    await asyncio.wait_for(done.wait(), timeout=600)
    finished = time.perf_counter()
    await nc.close()
    outcomes = list(decided.values())
    return {"elapsed": finished - started, "publish_elapsed": published - started,
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


async def run(database_url: str, nats_url: str, *, orders: int = 2000, buyers: int = 64,
              pgbench_seconds: int = 10, state_dir: Path | None = None) -> dict[str, float]:
    """Measures the service and pgbench on the PostgreSQL server of ``database_url`` (its own
    databases are created there) and the NATS at ``nats_url``."""
    stock = orders * 9 // 10
    service_db = "bench_hot_sku"
    drop_database(database_url, service_db)
    service_url = ensure_database(database_url, service_db)
    with tempfile.TemporaryDirectory(prefix="oms-hot-sku-") as scratch:
        service = _start_inventory(service_url, nats_url, state_dir or Path(scratch))
        try:
            node_id, sku = await _stock_one_sku(service.endpoint, stock)
            measured = await _buy(nats_url, sku, orders, buyers)
        finally:
            service.stop()
    reserved = _check_no_oversell(service_url, node_id, sku, stock, measured)

    tools = EmbeddedPostgres(Path(tempfile.gettempdir()))
    pgbench_url = ensure_database(database_url, "bench_hot_sku_pgbench")
    naive_tps = await asyncio.to_thread(run_pgbench, pgbench_url, tools.bin("pgbench"),
                                        tools.bin("psql"), buyers, pgbench_seconds)
    return {
        "orders": orders,
        "buyers": buyers,
        "stock": stock,
        "reserved": reserved,
        "refused": measured["refused"],
        "decided_per_s": orders / measured["elapsed"],
        "reservations_per_s": reserved / measured["elapsed"],
        "pgbench_tps": naive_tps,
        "ratio": (orders / measured["elapsed"]) / naive_tps,
        "elapsed_s": measured["elapsed"],
    }


def report(figures: dict[str, float]) -> str:
    return "\n".join([
        f"  hot SKU: {figures['orders']:.0f} one-unit orders for one SKU at one node from "
        f"{figures['buyers']:.0f} concurrent buyers, {figures['stock']:.0f} units in stock",
        f"    orders decided (allocated or refused)  {figures['decided_per_s']:8.1f} orders/s "
        f"({figures['elapsed_s']:.1f} s)",
        f"    units reserved                         {figures['reservations_per_s']:8.1f} /s; "
        f"{figures['reserved']:.0f} reserved, {figures['refused']:.0f} refused, none oversold",
        f"    pgbench, conditional UPDATE + ledger   {figures['pgbench_tps']:8.1f} tx/s "
        f"({figures['buyers']:.0f} clients, one row)",
        f"    ratio decided / pgbench                {figures['ratio']:8.2f}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--buyers", type=int, default=64)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oms-hot-sku-") as scratch:
        root = Path(scratch)
        with EmbeddedPostgres(root / "postgres", durable=True) as postgres, \
                EmbeddedNats(root / "nats") as nats_server:
            figures = asyncio.run(run(postgres.url(), nats_server.url, orders=args.orders,
                                      buyers=args.buyers,
                                      pgbench_seconds=args.pgbench_seconds, state_dir=root))
    print(f"\nOMS hot-SKU bench: PostgreSQL durable (fsync on); {psutil.cpu_count()} CPUs")
    print(report(figures))


if __name__ == "__main__":
    main()
