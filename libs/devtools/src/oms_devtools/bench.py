"""``make bench``: orders through the whole suite, next to PostgreSQL alone.

1. Starts a durable embedded PostgreSQL (fsync on, as in production), NATS and the suite.
2. Posts N paid orders concurrently to the gateway and follows each until it is released to
   its warehouse (``OrderStatusChanged`` to RELEASED): orders/s accepted, orders/s released,
   and the latency from post to release (p50/p95/p99).
3. Runs pgbench on the same server with the SQL one order costs across the services (see
   ``PGBENCH_SCRIPT``), and prints our rate as a ratio of that.
4. The hot-SKU figure (``bench_hot_sku``): many buyers for one SKU, next to pgbench's plain
   conditional UPDATE on one row.
5. The outbox relay draining a backlog, and the services' resident memory.
6. The rate shop (``bench_shipping``): RateShipment calls/s for one parcel across 5 carriers
   x 4 services, as a ratio of an empty unary gRPC call's rate in the same run.
7. Labels (``bench_labels``): labels bought and label PDFs printed per second over gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import httpx
import nats
import psutil
from google.protobuf import json_format
from google.type import latlng_pb2
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.orders.v1 import events_pb2, orders_pb2
from oms_platform import bus
from oms_platform.db import create_engine, create_metadata
from oms_platform.events import encode
from oms_platform.outbox import OutboxRelay
from sqlalchemy import insert

from oms_devtools import bench_hot_sku, bench_labels, bench_shipping
from oms_devtools.servers import EmbeddedNats, EmbeddedPostgres, ensure_database
from oms_devtools.stack import Stack

PGBENCH_SCHEMA = """
DROP TABLE IF EXISTS b_orders, b_lines, b_timeline, b_outbox, b_inbox, b_stock, b_products,
  b_nodes, b_buffers, b_allocations, b_reservations, b_ledger, b_kpi_orders, b_kpi_lines,
  b_order_products;
CREATE TABLE b_orders (id uuid PRIMARY KEY, channel text, external_order_id text,
  request_id text UNIQUE, status text, payment_status text, service_level text,
  customer jsonb, shipping_address jsonb, currency_code text, total numeric,
  create_time timestamptz DEFAULT now(), update_time timestamptz DEFAULT now(),
  priority boolean, tags text[], holds jsonb, payments jsonb, release_time timestamptz,
  merge_group uuid, region_code text, customer_key text, search_text text, skus text[],
  item_count int, weight_grams bigint, UNIQUE (channel, external_order_id));
CREATE INDEX ON b_orders (merge_group);
CREATE TABLE b_lines (order_id uuid, line_id text, external_line_id text, sku text,
  quantity int, unit_price numeric, allocated jsonb DEFAULT '{}', backordered int DEFAULT 0,
  failed int DEFAULT 0, cancelled int DEFAULT 0, shipped int DEFAULT 0, returned int DEFAULT 0,
  PRIMARY KEY (order_id, line_id));
CREATE TABLE b_timeline (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_id uuid,
  at timestamptz, kind text, detail jsonb, actor text);
CREATE INDEX ON b_timeline (order_id);
CREATE TABLE b_order_products (sku text PRIMARY KEY, minimum_order_quantity int,
  weight_grams bigint);
CREATE TABLE b_outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id uuid UNIQUE, subject text, headers jsonb, payload bytea,
  created_at timestamptz DEFAULT now(), published_at timestamptz);
CREATE INDEX ON b_outbox (id) WHERE published_at IS NULL;
CREATE OR REPLACE FUNCTION b_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('oms_outbox', ''); RETURN NULL; END $$;
CREATE TRIGGER b_outbox_notify AFTER INSERT ON b_outbox
  FOR EACH STATEMENT EXECUTE FUNCTION b_outbox_notify();
CREATE TABLE b_inbox (consumer text, event_id uuid, received_at timestamptz DEFAULT now(),
  PRIMARY KEY (consumer, event_id));
CREATE TABLE b_products (sku text PRIMARY KEY, backorder_policy text, backorder_limit bigint,
  deleted boolean DEFAULT false);
CREATE TABLE b_nodes (node_id text PRIMARY KEY, latitude float8, longitude float8,
  priority int, shipment_cost numeric, service_regions text[]);
CREATE TABLE b_buffers (channel text, sku text, buffer bigint, PRIMARY KEY (channel, sku));
CREATE TABLE b_stock (node_id text, sku text, on_hand bigint, reserved bigint,
  safety_stock bigint DEFAULT 0, PRIMARY KEY (node_id, sku),
  CHECK (reserved >= 0 AND on_hand >= reserved));
CREATE TABLE b_allocations (order_name text PRIMARY KEY, priority boolean,
  capture_time timestamptz, latitude float8, longitude float8, region_code text,
  administrative_area text, expire_time timestamptz);
CREATE TABLE b_reservations (order_name text, line_id text, node_id text, sku text,
  quantity int, PRIMARY KEY (order_name, line_id, node_id));
CREATE TABLE b_ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, node_id text,
  sku text, kind text, on_hand_delta bigint, reserved_delta bigint, reference text,
  request_id text UNIQUE, at timestamptz DEFAULT now());
CREATE INDEX ON b_ledger (node_id, sku);
CREATE TABLE b_kpi_orders (order_name text PRIMARY KEY, channel text, customer_key text,
  currency_code text, place_time timestamptz, units_ordered int, amount_ordered numeric);
CREATE TABLE b_kpi_lines (order_name text, line_id text, sku text, quantity int,
  unit_price numeric, PRIMARY KEY (order_name, line_id));
INSERT INTO b_nodes VALUES ('node-1', 39.53, -119.81, 1, 0, '{}'),
  ('node-2', 40.52, -74.41, 1, 0, '{}');
INSERT INTO b_products SELECT 'SKU-' || s, 'DENY', 0 FROM generate_series(1, 20) s;
INSERT INTO b_stock SELECT 'node-' || n, 'SKU-' || s, 1000000000, 0
  FROM generate_series(1, 2) n, generate_series(1, 20) s;
"""

# One paid order's statements, transaction by transaction, as the services issue them (read
# off PostgreSQL's statement log): capture; inventory's allocation (a batch of one) with its
# stock-level event; the read model's copy; orders' allocation, status changes and release;
# the relay marking the six events published.
PGBENCH_SCRIPT = """
\\set sku random(1, 20)
\\set node random(1, 2)
BEGIN;
SELECT sku, minimum_order_quantity, weight_grams FROM b_order_products
  WHERE sku IN ('SKU-' || :sku);
INSERT INTO b_orders (id, channel, external_order_id, status, payment_status, service_level,
  customer, shipping_address, currency_code, total, priority, tags, holds, payments,
  region_code, customer_key, search_text, skus, item_count, weight_grams)
  VALUES (gen_random_uuid(), 'bench', gen_random_uuid()::text, 'PENDING_ALLOCATION', 'PAID',
  'STANDARD', '{"display_name": "Bench Customer"}',
  '{"recipient": "Bench Customer", "region_code": "US", "locality": "Los Angeles"}',
  'USD', 12.50, false, '{}', '[]', '[]', 'US', '', 'bench customer', ARRAY['SKU-' || :sku],
  1, 0)
  ON CONFLICT DO NOTHING RETURNING id \\gset
INSERT INTO b_lines (order_id, line_id, external_line_id, sku, quantity, unit_price)
  VALUES (':id', '1', '', 'SKU-' || :sku, 1, 12.50);
INSERT INTO b_timeline (order_id, at, kind, detail, actor)
  VALUES (':id', now(), 'CREATED', '{"channel": "bench"}', 'api');
INSERT INTO b_outbox (event_id, subject, headers, payload)
  VALUES (gen_random_uuid(), 'oms.orders.order_created', '{"ce-id": "x"}', '\\x7b7d');
COMMIT;
BEGIN;
INSERT INTO b_inbox (consumer, event_id) VALUES ('inventory', gen_random_uuid())
  ON CONFLICT DO NOTHING RETURNING event_id;
INSERT INTO b_allocations VALUES ('orders/:id', false, now(), 34.05, -118.24, 'US', 'CA', NULL)
  ON CONFLICT DO NOTHING RETURNING order_name;
SELECT sku, backorder_policy, backorder_limit FROM b_products
  WHERE sku IN ('SKU-' || :sku) AND NOT deleted;
SELECT node_id, latitude, longitude, priority, shipment_cost, service_regions FROM b_nodes;
SELECT node_id, sku, on_hand - reserved - safety_stock FROM b_stock
  WHERE sku IN ('SKU-' || :sku) ORDER BY node_id, sku FOR UPDATE;
UPDATE b_stock SET reserved = reserved + 1
  WHERE node_id = 'node-' || :node AND sku = 'SKU-' || :sku
    AND on_hand - reserved - safety_stock >= 1;
INSERT INTO b_reservations VALUES ('orders/:id', '1', 'node-' || :node, 'SKU-' || :sku, 1);
INSERT INTO b_ledger (node_id, sku, kind, on_hand_delta, reserved_delta, reference)
  VALUES ('node-' || :node, 'SKU-' || :sku, 'RESERVATION', 0, 1, 'orders/:id');
INSERT INTO b_outbox (event_id, subject, headers, payload)
  VALUES (gen_random_uuid(), 'oms.inventory.stock_allocated', '{"ce-id": "x"}', '\\x7b7d');
SELECT node_id, sku, on_hand, reserved, safety_stock,
  greatest(on_hand - reserved - safety_stock, 0) FROM b_stock
  WHERE (node_id, sku) IN (('node-' || :node, 'SKU-' || :sku));
SELECT sku, sum(greatest(on_hand - reserved - safety_stock, 0)) FROM b_stock
  WHERE sku IN ('SKU-' || :sku) GROUP BY sku;
SELECT channel, sku, buffer FROM b_buffers WHERE sku IN ('SKU-' || :sku, '*');
INSERT INTO b_outbox (event_id, subject, headers, payload)
  VALUES (gen_random_uuid(), 'oms.inventory.stock_level_changed', '{"ce-id": "x"}',
  '\\x7b7d');
COMMIT;
BEGIN;
INSERT INTO b_inbox (consumer, event_id) VALUES ('orders-read-model', gen_random_uuid())
  ON CONFLICT DO NOTHING RETURNING event_id;
INSERT INTO b_kpi_orders VALUES ('orders/:id', 'bench', '', 'USD', now(), 1, 12.50)
  ON CONFLICT DO NOTHING;
INSERT INTO b_kpi_lines VALUES ('orders/:id', '1', 'SKU-' || :sku, 1, 12.50)
  ON CONFLICT DO NOTHING;
COMMIT;
BEGIN;
INSERT INTO b_inbox (consumer, event_id) VALUES ('orders', gen_random_uuid())
  ON CONFLICT DO NOTHING RETURNING event_id;
SELECT id FROM b_orders WHERE id = ':id' OR merge_group = (SELECT merge_group FROM b_orders
  WHERE id = ':id') ORDER BY id FOR UPDATE;
SELECT o.*, (SELECT jsonb_agg(jsonb_build_array(l.line_id, l.sku, l.quantity, l.allocated,
  l.backordered, l.cancelled, l.shipped) ORDER BY l.line_id) FROM b_lines l
  WHERE l.order_id = o.id) FROM b_orders o WHERE o.id = ':id';
UPDATE b_orders SET status = 'RELEASED', release_time = now(), update_time = now()
  WHERE id = ':id';
UPDATE b_lines SET allocated = jsonb_build_object('node-' || :node, 1)
  WHERE order_id = ':id' AND line_id = '1';
INSERT INTO b_timeline (order_id, at, kind, detail, actor)
  VALUES (':id', now(), 'ALLOCATED', '{}', 'inventory'),
         (':id', now(), 'STATUS_CHANGED', '{"status": "ALLOCATED"}', 'inventory'),
         (':id', now(), 'RELEASED', '{"node": "node"}', 'inventory');
INSERT INTO b_outbox (event_id, subject, headers, payload)
  VALUES (gen_random_uuid(), 'oms.orders.order_status_changed', '{"ce-id": "x"}', '\\x7b7d'),
         (gen_random_uuid(), 'oms.orders.order_status_changed', '{"ce-id": "x"}', '\\x7b7d'),
         (gen_random_uuid(), 'oms.orders.order_released.node', '{"ce-id": "x"}', '\\x7b7d');
COMMIT;
UPDATE b_outbox SET published_at = now()
  WHERE id IN (SELECT id FROM b_outbox WHERE published_at IS NULL ORDER BY id LIMIT 6);
"""


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def _setup_inventory(target: str, orders: int) -> list[str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        nodes = []
        for city, lat, lng in (("reno", 39.53, -119.81), ("edison", 40.52, -74.41)):
            node_id = f"{city}-{secrets.token_hex(3)}"
            nodes.append(node_id)
            await stub.CreateFulfilmentNode(inventory_pb2.CreateFulfilmentNodeRequest(
                fulfilment_node=inventory_pb2.FulfilmentNode(
                    node_id=node_id, display_name=city, type=inventory_pb2.NODE_TYPE_WAREHOUSE,
                    address=common_pb2.Address(
                        recipient=city, address_lines=["1 Dock Rd"], locality=city,
                        postal_code="00000", region_code="US",
                        location=latlng_pb2.LatLng(latitude=lat, longitude=lng)))))
        skus = [f"BENCH-{i:02d}-{secrets.token_hex(3).upper()}" for i in range(20)]
        for sku in skus:
            await stub.CreateProduct(inventory_pb2.CreateProductRequest(
                product=inventory_pb2.Product(sku=sku, title=sku)))
            for node_id in nodes:
                await stub.AdjustStock(inventory_pb2.AdjustStockRequest(
                    node_id=node_id, sku=sku, delta=orders,
                    reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT))
        return skus


def _order(sku: str, index: int) -> dict[str, object]:
    return {
        "channel": "bench",
        "externalOrderId": f"{uuid.uuid4().hex}-{index}",
        "customer": {"displayName": "Bench Customer"},
        "shippingAddress": {"recipient": "Bench Customer", "addressLines": ["1 Main St"],
                            "locality": "Los Angeles", "administrativeArea": "CA",
                            "postalCode": "90012", "regionCode": "US"},
        "lines": [{"sku": sku, "quantity": 1,
                   "unitPrice": {"currencyCode": "USD", "amount": "12.50"}}],
        "serviceLevel": "SERVICE_LEVEL_STANDARD",
        "paymentStatus": "PAYMENT_STATUS_PAID",
    }


async def measure_suite(stack: Stack, nats_url: str, orders: int,
                        concurrency: int) -> dict[str, float]:
    skus = await _setup_inventory(stack.services["inventory"].endpoint, orders)
    released_at: dict[str, float] = {}
    done = asyncio.Event()
    released_status = orders_pb2.OrderStatus.Name(orders_pb2.ORDER_STATUS_RELEASED)

    nc = await nats.connect(nats_url)

    async def on_status(msg: nats.aio.msg.Msg) -> None:
        event = json_format.Parse(msg.data, events_pb2.OrderStatusChanged(),
                                  ignore_unknown_fields=True)
        if orders_pb2.OrderStatus.Name(event.status) == released_status:
            released_at.setdefault(event.order, time.perf_counter())
            if len(released_at) >= orders:
                done.set()

    await nc.subscribe("oms.orders.order_status_changed", cb=on_status)
    posted_at: dict[str, float] = {}
    accepted_at: list[float] = []
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # A sales channel partner of the bench's channel, as every partner's client calls.
    key = stack.create_partner(f"bench-{uuid.uuid4().hex[:8]}", "sales-channel",
                               channels=("bench",))
    async with httpx.AsyncClient(base_url=stack.services["gateway"].endpoint, timeout=60,
                                 limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as client:

        async def post(index: int) -> None:
            async with slots:
                started = time.perf_counter()
                reply = await client.post("/v1/orders", json=_order(skus[index % len(skus)],
                                                                     index),
                                          headers={"Idempotency-Key": uuid.uuid4().hex})
                reply.raise_for_status()
                posted_at[reply.json()["name"]] = started
                accepted_at.append(time.perf_counter())

        start = time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(orders)))
        await asyncio.wait_for(done.wait(), timeout=300)
    await nc.close()
    latencies = [released_at[name] - posted_at[name] for name in posted_at]
    return {
        "accepted_per_s": orders / (max(accepted_at) - start),
        "released_per_s": orders / (max(released_at.values()) - start),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def run_pgbench(postgres: EmbeddedPostgres, clients: int, seconds: int) -> float:
    url = ensure_database(postgres.url(), "bench_pgbench")
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    subprocess.run([str(postgres.bin("psql")), "-q", "-v", "ON_ERROR_STOP=1", dsn],
                   input=PGBENCH_SCHEMA, text=True, check=True, capture_output=True)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(PGBENCH_SCRIPT)
    try:
        result = subprocess.run(
            [str(postgres.bin("pgbench")), "-n", "-c", str(clients), "-j", "2", "-T",
             str(seconds), "-f", script.name, dsn],
            text=True, capture_output=True,
        )
    finally:
        Path(script.name).unlink()
    match = re.search(r"tps = ([\d.]+)", result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"pgbench printed no tps:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pgbench-clients", type=int, default=16)
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--relay-events", type=int, default=20000)
    parser.add_argument("--hot-sku-orders", type=int, default=2000)
    parser.add_argument("--hot-sku-buyers", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="oms-bench-") as scratch:
        root = Path(scratch)
        with EmbeddedPostgres(root / "postgres", durable=True) as postgres, \
                EmbeddedNats(root / "nats") as nats_server:
            stack = Stack(root, postgres.url(), nats_server.url, database_prefix="bench")
            try:
                stack.start()
                asyncio.run(measure_suite(stack, nats_server.url, min(200, args.orders),
                                          args.concurrency))  # warm-up
                suite = asyncio.run(measure_suite(stack, nats_server.url, args.orders,
                                                  args.concurrency))
                memory = _rss_mib(stack)
            finally:
                stack.stop()
            pgbench_tps = run_pgbench(postgres, args.pgbench_clients, args.pgbench_seconds)
            hot_sku = asyncio.run(bench_hot_sku.run(
                postgres.url(), nats_server.url, orders=args.hot_sku_orders,
                buyers=args.hot_sku_buyers, state_dir=root))
            rate_shop = asyncio.run(bench_shipping.run(postgres.url(), nats_server.url,
                                                       state_dir=root))
            labels = asyncio.run(bench_labels.run(postgres.url(), nats_server.url,
                                                  state_dir=root))
            relay_rate = asyncio.run(measure_relay(
                ensure_database(postgres.url(), "bench_relay"), nats_server.url,
                args.relay_events))

    print(f"\nOMS bench: {args.orders} orders posted to the gateway, {args.concurrency} at a "
          f"time, 1 line each, 20 SKUs x 2 nodes; PostgreSQL durable (fsync on); "
          f"{psutil.cpu_count()} CPUs")
    print(f"  accepted (201 from the gateway)  {suite['accepted_per_s']:8.1f} orders/s")
    print(f"  allocated and released           {suite['released_per_s']:8.1f} orders/s")
    print(f"  post -> released latency         p50 {suite['p50_ms']:.0f} ms   "
          f"p95 {suite['p95_ms']:.0f} ms   p99 {suite['p99_ms']:.0f} ms")
    print(f"  pgbench, same SQL per order      {pgbench_tps:8.1f} orders/s "
          f"({args.pgbench_clients} clients, {args.pgbench_seconds} s)")
    print(f"  ratio released / pgbench         {suite['released_per_s'] / pgbench_tps:8.2f}")
    print(bench_hot_sku.report(hot_sku))
    print(bench_shipping.report(rate_shop))
    print(bench_labels.report(labels))
    print(f"  outbox relay, {args.relay_events} backlog  {relay_rate:8.1f} events/s published to "
          "JetStream and marked")
    print("  resident memory after the run    " +
          ", ".join(f"{name} {mib:.0f} MiB" for name, mib in memory.items()))


if __name__ == "__main__":
    main()
