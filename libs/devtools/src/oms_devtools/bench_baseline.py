"""The pgbench baseline: PostgreSQL alone doing what the pipeline asks of it per order.

Its schema is the services' own: the orders and inventory migrations run into two fresh
databases, as each service runs them into its own (every index, trigger and check is there).
Its statements are those ``pg_stat_statements`` recorded for the orders and inventory
databases during a real run of the pipeline (see ``make bench``'s statement table, which
puts the two side by side per order), written out with literal values, and its event payloads
have the sizes and headers of the events that run wrote.

Two flavours, both run as two pgbench processes at once (one per database, as the services
are two processes with their own pools):

- one by one: every order's transactions on their own, as a service that fetched one event
  at a time would issue them;
- batched: the consumers' transactions (read model, allocation, release, relay) carry
  ``batch`` orders each, as many as one fetch of the services' consumers brings; capture
  stays one order per transaction, since every order is its own request.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from oms_devtools.servers import EmbeddedPostgres, drop_database, ensure_database

SKUS = 20
NODE = "node-1"
SERVICES = ("orders", "inventory")


@dataclass(frozen=True)
class EventShape:
    """An event as the pipeline wrote it: its headers (a real sample, with ``traceparent``)
    and its payload's size in bytes."""

    headers: str
    payload_bytes: int


DEFAULT_SHAPE = EventShape('{"ce-id": "00000000-0000-0000-0000-000000000000"}', 400)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _outbox_rows(subject: str, shape: EventShape, count: int) -> str:
    headers = _lit(shape.headers)
    row = (f"(gen_random_uuid(), {_lit(subject)}, {headers}::jsonb, "
           f"convert_to(repeat('x', {shape.payload_bytes}), 'UTF8'))")
    return ",\n  ".join([row] * count)


def _relay(events: int) -> str:
    """The outbox relay: its advisory lock, its read of pending rows (payloads included, it
    publishes them) and its mark, for ``events`` rows."""
    return f"""BEGIN;
SELECT pg_try_advisory_xact_lock(4242);
SELECT id, event_id, subject, headers, payload, attempts, created_at FROM outbox
  WHERE published_at IS NULL ORDER BY id LIMIT {events};
UPDATE outbox SET published_at = now() WHERE id IN (
  SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT {events}
  FOR UPDATE SKIP LOCKED);
COMMIT;
"""


def orders_script(batch: int, shapes: dict[str, EventShape]) -> str:
    """The orders database's share of ``batch`` orders: each captured in its own transaction,
    then the read model's and the release's transactions for all of them at once (one order
    each when ``batch`` is 1), and the relay publishing their events."""
    shape = lambda subject: shapes.get(subject, DEFAULT_SHAPE)  # noqa: E731
    parts = []
    for i in range(1, batch + 1):
        parts.append(f"""\\set sku{i} random(1, {SKUS})
BEGIN;
SELECT sku, minimum_order_quantity, weight_grams, deleted, change_time FROM order_products
  WHERE sku = ANY (ARRAY['SKU-' || :sku{i}]) AND deleted IS false;
INSERT INTO orders (id, channel, external_order_id, request_id, status, customer,
  shipping_address, service_level, payment_status, currency_code, total_amount, create_time,
  update_time, priority, priority_flag, tags, gift_note, high_value, region_code,
  customer_key, address_key, search_text, skus, item_count, weight_grams, holds, payments,
  shipments, deliveries, returns, order_time)
  VALUES (gen_random_uuid(), 'bench', gen_random_uuid()::text, gen_random_uuid()::text,
  'PENDING_ALLOCATION', '{{"display_name": "Bench Customer"}}',
  '{{"recipient": "Bench Customer", "address_lines": ["1 Main St"], "locality": "Los Angeles",
    "administrative_area": "CA", "postal_code": "90012", "region_code": "US"}}',
  'STANDARD', 'PAID', 'USD', 12.50, now(), now(), false, false, '{{}}', '', false, 'US',
  'bench customer', '1 main st 90012 us', 'bench customer', ARRAY['SKU-' || :sku{i}], 1, 0,
  '[]', '[]', '[]', '[]', '[]', now())
  RETURNING id AS id{i} \\gset
INSERT INTO order_lines (order_id, line_id, external_line_id, sku, quantity, unit_price)
  VALUES (':id{i}', '1', '', 'SKU-' || :sku{i}, 1, 12.50);
INSERT INTO order_timeline (order_id, at, kind, detail, actor)
  VALUES (':id{i}', now(), 'CREATED', '{{"channel": "bench"}}', 'api') RETURNING id;
INSERT INTO outbox (event_id, subject, headers, payload) VALUES
  {_outbox_rows("oms.orders.order_created", shape("oms.orders.order_created"), 1)}
  RETURNING id;
COMMIT;
""")
    ids = [f"':id{i}'::uuid" for i in range(1, batch + 1)]
    id_list = ", ".join(ids)
    event_ids = ", ".join(["gen_random_uuid()"] * batch)
    kpi_orders = ",\n  ".join(
        f"('orders/' || ':id{i}', 'bench', 'x', 'bench customer', 'Bench Customer', '', 'USD', "
        f"now(), 1, 12.50)" for i in range(1, batch + 1))
    kpi_lines = ",\n  ".join(
        f"('orders/' || ':id{i}', '1', 'SKU-' || :sku{i}, 1, 12.50)" for i in range(1, batch + 1))
    lines = ",\n  ".join(
        f"(':id{i}'::uuid, '1', '{{\"{NODE}\": 1}}'::jsonb)" for i in range(1, batch + 1))
    timeline = ",\n  ".join(
        f"({oid}, now(), '{kind}', '{{}}', 'inventory')"
        for oid in ids for kind in ("ALLOCATED", "STATUS_CHANGED", "RELEASED"))
    status_shape = shape("oms.orders.order_status_changed")
    released_shape = shape("oms.orders.order_released")
    parts.append(f"""BEGIN;
INSERT INTO inbox (consumer, event_id) SELECT 'orders-read-model', unnest(ARRAY[{event_ids}])
  ON CONFLICT DO NOTHING RETURNING event_id;
INSERT INTO kpi_orders (order_name, channel, external_order_id, customer_key, customer_name,
  email, currency_code, place_time, units_ordered, amount_ordered) VALUES
  {kpi_orders}
  ON CONFLICT DO NOTHING;
INSERT INTO kpi_order_lines (order_name, line_id, sku, quantity, unit_price) VALUES
  {kpi_lines}
  ON CONFLICT DO NOTHING;
COMMIT;
BEGIN;
INSERT INTO inbox (consumer, event_id) SELECT 'orders', unnest(ARRAY[{event_ids}])
  ON CONFLICT DO NOTHING RETURNING event_id;
SELECT orders.id FROM orders WHERE orders.id IN ({id_list}) OR orders.merge_group IS NOT NULL
  AND orders.merge_group IN (SELECT peer.merge_group FROM orders AS peer
  WHERE peer.id IN ({id_list})) ORDER BY orders.id FOR UPDATE;
SELECT o.*, (SELECT jsonb_agg(jsonb_build_array(l.line_id, l.external_line_id, l.sku,
  l.quantity, l.unit_price::text, l.allocated, l.backordered, l.failed, l.cancelled,
  l.shipped, l.returned) ORDER BY l.line_id::int) FROM order_lines l
  WHERE l.order_id = o.id) FROM orders o WHERE o.id IN ({id_list});
UPDATE orders SET status = 'RELEASED', update_time = now(), release_time = now()
  WHERE id IN ({id_list});
UPDATE order_lines SET allocated = v.allocated FROM (VALUES
  {lines}) AS v(order_id, line_id, allocated)
  WHERE order_lines.order_id = v.order_id AND order_lines.line_id = v.line_id;
INSERT INTO order_timeline (order_id, at, kind, detail, actor) VALUES
  {timeline};
INSERT INTO outbox (event_id, subject, headers, payload) VALUES
  {_outbox_rows("oms.orders.order_status_changed", status_shape, 2 * batch)},
  {_outbox_rows(f"oms.orders.order_released.{NODE}", released_shape, batch)};
COMMIT;
""")
    parts.append(_relay(4 * batch))
    return "".join(parts)


def inventory_script(batch: int, shapes: dict[str, EventShape], skus: int = SKUS) -> str:
    """The inventory database's share of ``batch`` orders: one allocation transaction for all
    of them (inbox, allocation rows, the locked levels of their SKUs, reservations, ledger,
    one StockAllocated each and one StockLevelChanged per level touched) and the relay.
    With ``skus=1`` every order wants the same SKU at the same node: the hot-SKU baseline."""
    shape = lambda subject: shapes.get(subject, DEFAULT_SHAPE)  # noqa: E731
    n = range(1, batch + 1)
    sets = "".join(f"\\set sku{i} random(1, {skus})\n" for i in n)
    wanted_skus = ", ".join(f"'SKU-' || :sku{i}" for i in n)
    allocations = ",\n  ".join(
        "('orders/' || gen_random_uuid(), false, now(), 34.05, -118.24, 'US', 'CA', "
        "now() + interval '1 day')" for _ in n)
    wanted = ",\n  ".join(f"('{NODE}', 'SKU-' || :sku{i})" for i in n)
    reservations = ",\n  ".join(
        f"('orders/' || gen_random_uuid(), '1', '{NODE}', 'SKU-' || :sku{i}, 1)" for i in n)
    ledger = ",\n  ".join(
        f"('{NODE}', 'SKU-' || :sku{i}, 'RESERVATION', 0, 1, 'orders/x')" for i in n)
    levels = min(batch, skus)
    return f"""{sets}BEGIN;
INSERT INTO inbox (consumer, event_id)
  SELECT 'inventory', unnest(ARRAY[{", ".join(["gen_random_uuid()"] * batch)}])
  ON CONFLICT DO NOTHING RETURNING event_id;
INSERT INTO order_allocations (order_name, priority, capture_time, latitude, longitude,
  region_code, administrative_area, expire_time) VALUES
  {allocations}
  ON CONFLICT DO NOTHING RETURNING order_name;
SELECT products.sku, products.backorder_policy, products.backorder_limit FROM products
  WHERE products.sku IN ({wanted_skus}) AND products.deleted IS false;
SELECT node_id, latitude, longitude, priority, shipment_cost, shipment_cost_currency,
  service_regions FROM fulfilment_nodes;
SELECT node_id, sku, on_hand - reserved - safety_stock AS available FROM stock_levels
  WHERE sku IN ({wanted_skus}) ORDER BY node_id, sku FOR UPDATE;
UPDATE stock_levels AS s SET reserved = s.reserved + v.quantity
  FROM (SELECT node_id, sku, count(*) AS quantity FROM (VALUES
  {wanted}) AS w(node_id, sku) GROUP BY node_id, sku) AS v
  WHERE s.node_id = v.node_id AND s.sku = v.sku
    AND s.on_hand - s.reserved - s.safety_stock >= v.quantity;
INSERT INTO reservations (order_name, line_id, node_id, sku, quantity) VALUES
  {reservations}
  ON CONFLICT (order_name, line_id, node_id)
  DO UPDATE SET quantity = reservations.quantity + excluded.quantity;
INSERT INTO stock_ledger (node_id, sku, kind, on_hand_delta, reserved_delta, reference) VALUES
  {ledger};
INSERT INTO outbox (event_id, subject, headers, payload) VALUES
  {_outbox_rows("oms.inventory.stock_allocated", shape("oms.inventory.stock_allocated"),
                batch)};
SELECT node_id, sku, on_hand, reserved, safety_stock,
  greatest(on_hand - reserved - safety_stock, 0) AS available FROM stock_levels
  WHERE (node_id, sku) IN (SELECT DISTINCT '{NODE}', s FROM unnest(ARRAY[{wanted_skus}]) AS s)
  ORDER BY node_id, sku;
SELECT sku, sum(greatest(on_hand - reserved - safety_stock, 0)) FROM stock_levels
  WHERE sku IN ({wanted_skus}) GROUP BY sku;
SELECT channel, sku, buffer FROM channel_buffers WHERE sku IN ({wanted_skus}) OR sku = '*';
INSERT INTO outbox (event_id, subject, headers, payload) VALUES
  {_outbox_rows("oms.inventory.stock_level_changed",
                shape("oms.inventory.stock_level_changed"), levels)};
COMMIT;
{_relay(batch + levels)}"""


SEED = {
    "orders": f"""
INSERT INTO order_products (sku, minimum_order_quantity, weight_grams, deleted, change_time)
  SELECT 'SKU-' || s, 1, 0, false, now() FROM generate_series(1, {SKUS}) s;
""",
    "inventory": f"""
INSERT INTO fulfilment_nodes (node_id, display_name, node_type, address, latitude, longitude,
  priority) VALUES
  ('node-1', 'reno', 'WAREHOUSE', '{{}}', 39.53, -119.81, 1),
  ('node-2', 'edison', 'WAREHOUSE', '{{}}', 40.52, -74.41, 1);
INSERT INTO products (sku, title, gtin) SELECT 'SKU-' || s, 'SKU ' || s, ''
  FROM generate_series(1, {SKUS}) s;
INSERT INTO stock_levels (node_id, sku, on_hand, reserved)
  SELECT 'node-' || n, 'SKU-' || s, 1000000000, 0
  FROM generate_series(1, 2) n, generate_series(1, {SKUS}) s;
""",
}


def database(service: str, prefix: str = "bench_baseline") -> str:
    return f"{prefix}_{service}"


def prepare(server_url: str, env: dict[str, str],
            prefix: str = "bench_baseline") -> dict[str, str]:
    """Fresh baseline databases, migrated by the services' own ``migrate`` and seeded with
    the bench's 20 SKUs at two nodes; returns their libpq DSNs by service."""
    dsns = {}
    for service in SERVICES:
        drop_database(server_url, database(service, prefix))
        url = ensure_database(server_url, database(service, prefix))
        subprocess.run([sys.executable, "-m", f"oms_{service}", "migrate"], check=True,
                       capture_output=True, env={**env, "OMS_DATABASE_URL": url})
        dsns[service] = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsns[service], autocommit=True) as conn:
            conn.execute(SEED[service])
    return dsns


def event_shapes(dsns: dict[str, str]) -> dict[str, EventShape]:
    """Headers and mean payload size per subject of the events in the pipeline's outboxes
    (subjects carrying a node are folded into their event, e.g. ``order_released``)."""
    shapes = {}
    for dsn in dsns.values():
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT regexp_replace(subject, '^(oms\\.orders\\.order_released)\\..*$', '\\1'),"
                " (array_agg(headers::text))[1], avg(octet_length(payload))::int"
                " FROM outbox GROUP BY 1").fetchall()
        shapes.update({subject: EventShape(headers, size) for subject, headers, size in rows})
    return shapes


@dataclass(frozen=True)
class BaselineRun:
    orders_per_s: float
    per_side: dict[str, float]  # orders/s each database's pgbench reached
    cpu_s: float  # pgbench's own CPU seconds (both processes)


def pipeline_scripts(batch: int, shapes: dict[str, EventShape]) -> dict[str, str]:
    return {"orders": orders_script(batch, shapes),
            "inventory": inventory_script(batch, shapes)}


def run(postgres: EmbeddedPostgres, dsns: dict[str, str], scripts: dict[str, str], *,
        batch: int, clients: int, seconds: int) -> BaselineRun:
    """Each database's script under pgbench at once; orders/s is the slower side's (an order
    is through when every database has done its share).

    One order a script runs for ``seconds``. A batched script is long (``batch`` captures
    before its batch transactions), so it runs once per client instead, ``clients * batch``
    orders a side, timed by pgbench from the first statement to the last commit: a time
    limit would stop it mid-way. The faster side then finishes first, and the slower one has
    the machine to itself for its last part, which flatters the baseline, never the
    services."""
    with tempfile.TemporaryDirectory(prefix="oms-pgbench-") as scratch:
        procs = {}
        before = os.times()
        for service, text in scripts.items():
            path = Path(scratch) / f"{service}.sql"
            path.write_text(text)
            procs[service] = subprocess.Popen(
                [str(postgres.bin("pgbench")), "-n", "-c", str(clients), "-j", "1",
                 *(["-T", str(seconds)] if batch == 1 else ["-t", "1"]),
                 "-f", str(path), dsns[service]],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        per_side = {}
        failures = []
        for service, proc in procs.items():
            out, err = proc.communicate(timeout=seconds + 120)
            match = re.search(r"tps = ([\d.]+)", out)
            if proc.returncode != 0 or not match:
                failures.append(f"pgbench ({service}) printed no tps:\n{out}\n{err}")
            else:
                per_side[service] = float(match.group(1)) * batch
        after = os.times()
    if failures:
        raise RuntimeError("\n".join(failures))
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system)
    return BaselineRun(min(per_side.values()), per_side, cpu)
