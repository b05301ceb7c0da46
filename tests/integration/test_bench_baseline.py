"""The pgbench baseline's scripts do, on the services' own schema, what they say: each order
captured, read into the KPIs, its unit reserved and ledgered, released, its events written
and published. Run once each with pgbench (one client, one script run) and counted by hand."""

import os
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from oms_devtools import bench_baseline
from oms_devtools.servers import EmbeddedPostgres

SHAPES = {"oms.orders.order_created": bench_baseline.EventShape('{"ce-id": "a"}', 321)}


@pytest.fixture(scope="module")
def baseline(postgres_server_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    prefix = f"bench_baseline_t{os.getpid()}"
    return bench_baseline.prepare(postgres_server_url, env | {"OMS_NATS_URL": "nats://x:1"},
                                  prefix=prefix)


def _pgbench_once(dsn: str, script: str) -> None:
    pgbench = EmbeddedPostgres(Path(tempfile.gettempdir())).bin("pgbench")
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as file:
        file.write(script)
        file.flush()
        done = subprocess.run([str(pgbench), "-n", "-c", "1", "-t", "1", "-f", file.name, dsn],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed: 0" in done.stdout or "number of failed transactions: 0" in done.stdout, (
        done.stdout)


@pytest.mark.parametrize("batch", [1, 4])
def test_orders_script_captures_and_releases_its_batch(baseline: dict[str, str],
                                                       batch: int) -> None:
    dsn = baseline["orders"]
    with psycopg.connect(dsn) as conn:
        before = conn.execute("SELECT count(*) FROM orders").fetchone()
    _pgbench_once(dsn, bench_baseline.orders_script(batch, SHAPES))
    with psycopg.connect(dsn) as conn:
        orders, released = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'RELEASED' AND release_time"
            " IS NOT NULL) FROM orders").fetchone() or (0, 0)
        kpis = conn.execute("SELECT count(*) FROM kpi_orders").fetchone()
        inbox = conn.execute("SELECT count(*) FROM inbox").fetchone()
        outbox = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE published_at IS NULL),"
            " max(octet_length(payload)) FILTER (WHERE subject = 'oms.orders.order_created')"
            " FROM outbox").fetchone()
        timeline = conn.execute("SELECT count(*) FROM order_timeline").fetchone()
    assert before is not None and orders - before[0] == batch
    assert released == orders  # every order of every run so far
    assert kpis is not None and inbox is not None and timeline is not None
    # the read model's and the release's inbox row; created, allocated, status, released
    assert (kpis[0], inbox[0], timeline[0]) == (orders, 2 * orders, 4 * orders)
    assert outbox == (4 * orders, 0, 321)


@pytest.mark.parametrize("batch", [1, 4])
def test_inventory_script_reserves_one_unit_per_order(baseline: dict[str, str],
                                                      batch: int) -> None:
    dsn = baseline["inventory"]
    with psycopg.connect(dsn) as conn:
        before = conn.execute("SELECT coalesce(sum(reserved), 0) FROM stock_levels").fetchone()
        allocations_before = conn.execute("SELECT count(*) FROM order_allocations").fetchone()
    _pgbench_once(dsn, bench_baseline.inventory_script(batch, SHAPES))
    with psycopg.connect(dsn) as conn:
        reserved = conn.execute("SELECT sum(reserved) FROM stock_levels").fetchone()
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM order_allocations),"
            " (SELECT coalesce(sum(quantity), 0) FROM reservations),"
            " (SELECT sum(reserved_delta) FROM stock_ledger),"
            " (SELECT count(*) FROM outbox WHERE subject = 'oms.inventory.stock_allocated'),"
            " (SELECT count(*) FROM outbox WHERE published_at IS NULL)").fetchone()
    assert before is not None and reserved is not None and allocations_before is not None
    assert reserved[0] - before[0] == batch
    assert rows is not None
    allocations, reservations, ledger, allocated_events, unpublished = rows
    assert allocations - allocations_before[0] == batch
    assert reservations == ledger == reserved[0] == allocated_events
    assert unpublished == 0


def test_hot_sku_script_takes_every_unit_from_one_level(baseline: dict[str, str]) -> None:
    dsn = baseline["inventory"]
    with psycopg.connect(dsn) as conn:
        before = conn.execute(
            "SELECT reserved FROM stock_levels WHERE node_id = 'node-1' AND sku = 'SKU-1'"
        ).fetchone()
    _pgbench_once(dsn, bench_baseline.inventory_script(8, SHAPES, skus=1))
    with psycopg.connect(dsn) as conn:
        after = conn.execute(
            "SELECT reserved FROM stock_levels WHERE node_id = 'node-1' AND sku = 'SKU-1'"
        ).fetchone()
    assert before is not None and after is not None and after[0] - before[0] == 8

