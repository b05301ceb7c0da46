"""The bench's arithmetic, worked out by hand: percentiles, spreads, ratios of paired runs and
the per-order comparison of what PostgreSQL did for the pipeline and for pgbench."""

import pytest
from oms_devtools.bench_stats import (
    PerOrder,
    Spread,
    compare,
    comparison_table,
    database_totals,
    per_order,
    percentile,
    ratios,
    statement_key,
)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5  # halfway between the 2nd and 3rd of 1..4
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    # rank (5 - 1) * 0.99 = 3.96: 4 + 0.96 * (100 - 4)
    assert percentile([1.0, 2.0, 3.0, 4.0, 100.0], 99) == pytest.approx(96.16)
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_spread_is_median_and_range() -> None:
    spread = Spread.of([90.0, 110.0, 100.0])
    assert (spread.median, spread.low, spread.high, spread.runs) == (100.0, 90.0, 110.0, 3)
    assert spread.relative == pytest.approx(0.10)
    assert spread.text(0) == "100 (range 90..110, 3 runs)"
    assert Spread.of([1.0, 2.0, 3.0, 10.0]).median == 2.5


def test_ratios_pair_each_run_with_its_baseline() -> None:
    spread = ratios([80.0, 90.0, 60.0], [160.0, 150.0, 200.0])
    assert spread.median == pytest.approx(0.5)  # 0.5, 0.6, 0.3
    assert (spread.low, spread.high) == (pytest.approx(0.3), pytest.approx(0.6))
    with pytest.raises(ValueError):
        ratios([1.0], [1.0, 2.0])


@pytest.mark.parametrize(("query", "key"), [
    ("INSERT INTO outbox (event_id, subject) VALUES ($1::UUID, $2)", "INSERT outbox"),
    ("UPDATE stock_levels AS s SET reserved = s.reserved + v.quantity FROM "
     "jsonb_to_recordset($1) AS v", "UPDATE stock_levels"),
    ("DELETE FROM outbox WHERE outbox.published_at < now()", "DELETE outbox"),
    ("SELECT orders.id FROM orders WHERE orders.id IN ($1)\n  FOR UPDATE", "SELECT orders"),
    ("select node_id, sku from public.stock_levels where sku = $1", "SELECT stock_levels"),
    ("SELECT pg_try_advisory_xact_lock($1::BIGINT) AS lock", "SELECT pg_try_advisory_xact_lock()"),
    ("BEGIN", "transaction"),
    ("commit", "transaction"),
    ("SELECT $1", "SELECT"),
])
def test_statement_keys_ignore_spelling(query: str, key: str) -> None:
    assert statement_key(query) == key


ANCHORS = {"orders": "INSERT orders", "inventory": "INSERT order_allocations"}


def test_per_order_divides_by_the_anchor_rows_of_each_database() -> None:
    rows = [
        ("orders", "INSERT INTO orders (id) VALUES ($1)", 10, 10, 5000),
        ("orders", "INSERT INTO outbox (x) VALUES ($1)", 30, 30, 3000),
        ("orders", "INSERT INTO outbox (x) VALUES ($1) RETURNING outbox.id", 10, 10, 1000),
        ("inventory", "INSERT INTO order_allocations (a) VALUES ($1), ($2)", 2, 20, 800),
        ("inventory", "BEGIN", 4, 0, 0),
        ("gateway", "INSERT INTO idempotency (k) VALUES ($1)", 10, 10, 100),
    ]
    result = per_order(rows, ANCHORS)
    assert result[("orders", "INSERT outbox")] == PerOrder(4.0, 4.0, 400.0)  # 40 rows / 10
    assert result[("orders", "INSERT orders")] == PerOrder(1.0, 1.0, 500.0)
    assert result[("inventory", "INSERT order_allocations")] == PerOrder(0.1, 1.0, 40.0)
    assert result[("inventory", "transaction")] == PerOrder(0.2, 0.0, 0.0)
    assert not any(db == "gateway" for db, _ in result)


def test_per_order_needs_its_anchor() -> None:
    with pytest.raises(ValueError):
        per_order([("orders", "INSERT INTO outbox (x) VALUES ($1)", 1, 1, 1)], ANCHORS)


def test_database_totals_sum_every_key() -> None:
    rows = [("gateway", "INSERT INTO idempotency (k) VALUES ($1)", 10, 10, 100),
            ("gateway", "SELECT partners.id FROM partners", 10, 10, 0),
            ("fulfilment", "BEGIN", 5, 0, 0)]
    assert database_totals(rows, 10) == {"fulfilment": PerOrder(0.5, 0.0, 0.0),
                                         "gateway": PerOrder(2.0, 2.0, 10.0)}


def test_compare_judges_the_rows_each_write_changes() -> None:
    pipeline = {("orders", "INSERT outbox"): PerOrder(4.0, 4.0, 900.0),
                ("orders", "UPDATE orders"): PerOrder(1.0, 1.0, 2000.0),
                ("orders", "SELECT nodes"): PerOrder(0.2, 0.4, 0.0),
                ("orders", "DELETE outbox"): PerOrder(0.01, 0.0, 2.0),
                ("orders", "INSERT ledger"): PerOrder(1.0, 1.0, 300.0)}
    one_by_one = {("orders", "INSERT outbox"): PerOrder(2.0, 4.5, 800.0),  # +12 %: matches
                  ("orders", "UPDATE orders"): PerOrder(1.0, 2.0, 2000.0),  # twice the rows
                  ("orders", "SELECT nodes"): PerOrder(1.0, 2.0, 0.0)}  # a read: not judged
    batched = {("orders", "UPDATE orders"): PerOrder(0.01, 0.1, 10.0)}  # not judged
    result = {c.key: c for c in compare([pipeline, one_by_one, batched])}
    assert result[("orders", "INSERT outbox")].matches
    assert not result[("orders", "UPDATE orders")].matches
    assert not result[("orders", "SELECT nodes")].judged
    assert not result[("orders", "DELETE outbox")].judged  # a sweep: background
    assert not result[("orders", "INSERT ledger")].matches  # missing from the baseline
    assert result[("orders", "INSERT ledger")].sides[1] is None
    both = {c.key: c for c in compare([pipeline, one_by_one, batched], judged=(1, 2))}
    assert not both[("orders", "INSERT outbox")].matches  # no batched row at all


def test_comparison_table_marks_what_differs_and_totals_each_side() -> None:
    comparisons = compare([
        {("orders", "INSERT outbox"): PerOrder(4.0, 4.0, 900.0),
         ("orders", "INSERT orders"): PerOrder(1.0, 1.0, 2000.0)},
        {("orders", "INSERT outbox"): PerOrder(0.5, 4.0, 1000.0)},
    ])
    lines = comparison_table(comparisons, ["pipeline", "pgbench"]).splitlines()
    assert "pipeline" in lines[0] and "pgbench" in lines[0]
    orders_line = next(line for line in lines if "INSERT orders" in line)
    outbox_line = next(line for line in lines if "INSERT outbox" in line)
    assert orders_line.startswith("  !") and " -" in orders_line
    assert outbox_line.startswith("  =")
    assert lines[-1].split("|")[1].split() == ["5.00", "5.00", "2900"]
    assert lines[-1].split("|")[2].split() == ["0.50", "4.00", "1000"]
