"""Pick lists on a known warehouse, every expected list and stop order worked out by hand.

The floor: aisles A and B hold the ambient zone, aisle C the cold one. The serpentine walk goes
up A (bays 1, 2, 3), down B (bays 3, 2, 1), up C:
    A-01-01, A-01-02, A-02-01, A-03-01, B-03-01, B-02-01, B-01-01, C-01-01, C-02-01.

Three open orders (T is now):
    o1  standard, promised T+2h: SKU-1 x2 at B-01-01, SKU-2 x1 at A-03-01
    o2  EXPRESS,  promised T+4h: SKU-1 x1 at B-01-01, SKU-3 x1 at C-01-01 (cold)
    o3  standard, promised T+1h: SKU-4 x5 at A-01-02 (2 kg each), SKU-5 x1 at B-03-01
Urgency: o2 (express beats any promise), then o3, then o1.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oms_fulfilment.picking.domain import (
    Bin,
    Candidate,
    CandidateLine,
    Limits,
    Strategy,
    Window,
    confirm_stop,
    parse_bin_code,
    plan,
    walk_key,
)

T = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
BINS = [Bin(code, "cold" if code.startswith("C") else "ambient") for code in (
    "B-01-01", "C-02-01", "A-01-01", "A-02-01", "B-03-01", "A-01-02", "C-01-01", "A-03-01",
    "B-02-01")]
WIDE = Limits(max_orders=10, max_units=100, max_weight_grams=100_000)


def order(name: str, hours: int, lines: list[tuple[str, int, str, int]],
          priority: bool = False) -> Candidate:
    return Candidate(name, priority, T + timedelta(hours=hours), T - timedelta(minutes=hours),
                     tuple(CandidateLine(f"{name}-{sku}", f"orders/{name}", sku, quantity, bin_,
                                         grams)
                           for sku, quantity, bin_, grams in lines))


O1 = order("o1", 2, [("SKU-1", 2, "B-01-01", 100), ("SKU-2", 1, "A-03-01", 100)])
O2 = order("o2", 4, [("SKU-1", 1, "B-01-01", 100), ("SKU-3", 1, "C-01-01", 100)],
           priority=True)
O3 = order("o3", 1, [("SKU-4", 5, "A-01-02", 2000), ("SKU-5", 1, "B-03-01", 100)])
ALL = [O1, O2, O3]
WINDOW = Window(due_before=T + timedelta(hours=3))


def walk(planned) -> list[tuple[str, str, int, list[tuple[str, int, int]]]]:  # type: ignore[no-untyped-def]
    return [(s.bin_code, s.sku, s.quantity,
             [(a.fulfilment_order, a.tote, a.quantity) for a in s.allocations])
            for s in planned.stops]


def test_bin_codes_parse_to_aisle_bay_and_level() -> None:
    assert parse_bin_code("A-01-03") == (1, 1, 3)
    assert parse_bin_code("AA-2-10") == (27, 2, 10)
    assert parse_bin_code("12-04-01") == (12, 4, 1)
    assert parse_bin_code("dock door") is None


def test_the_walk_is_serpentine_through_the_aisles() -> None:
    bins = {b.bin_code: b for b in BINS}
    assert sorted(bins, key=lambda code: walk_key(code, bins)) == [
        "A-01-01", "A-01-02", "A-02-01", "A-03-01", "B-03-01", "B-02-01", "B-01-01",
        "C-01-01", "C-02-01"]


def test_inventory_walk_sequence_comes_before_the_code_and_odd_codes_come_last() -> None:
    bins = {b.bin_code: b for b in [*BINS, Bin("C-02-01", "cold", walk_sequence=1),
                                    Bin("DOCK", "ambient")]}
    ordered = sorted([*bins, "UNKNOWN-BIN"], key=lambda code: walk_key(code, bins))
    assert ordered[0] == "C-02-01"
    assert ordered[1:3] == ["A-01-01", "A-01-02"]
    assert ordered[-2:] == ["DOCK", "UNKNOWN-BIN"]


def test_single_order_takes_the_express_order_first() -> None:
    (planned,) = plan(Strategy.SINGLE_ORDER, ALL, BINS, WIDE, WINDOW)
    assert planned.fulfilment_orders == ("o2",)
    assert walk(planned) == [("B-01-01", "SKU-1", 1, [("o2", 1, 1)]),
                             ("C-01-01", "SKU-3", 1, [("o2", 1, 1)])]
    assert (planned.units, planned.weight_grams) == (2, 200)


def test_a_batch_makes_one_stop_per_sku_and_bin_with_each_unit_to_its_tote() -> None:
    (planned,) = plan(Strategy.BATCH, ALL, BINS, WIDE, WINDOW)
    assert planned.fulfilment_orders == ("o2", "o3", "o1")  # totes 1, 2, 3
    assert walk(planned) == [
        ("A-01-02", "SKU-4", 5, [("o3", 2, 5)]),
        ("A-03-01", "SKU-2", 1, [("o1", 3, 1)]),
        ("B-03-01", "SKU-5", 1, [("o3", 2, 1)]),
        ("B-01-01", "SKU-1", 3, [("o2", 1, 1), ("o1", 3, 2)]),
        ("C-01-01", "SKU-3", 1, [("o2", 1, 1)]),
    ]
    assert [s.sequence for s in planned.stops] == [1, 2, 3, 4, 5]
    assert (planned.units, planned.weight_grams) == (11, 10_000 + 600)


def test_a_batch_stops_at_the_units_a_picker_carries_and_takes_smaller_orders_behind() -> None:
    (planned,) = plan(Strategy.BATCH, ALL, BINS, Limits(10, 8, 100_000), WINDOW)
    # o2 (2 units) + o3 (6) = 8; o1 (3 more) does not fit.
    assert planned.fulfilment_orders == ("o2", "o3")
    (by_weight,) = plan(Strategy.BATCH, ALL, BINS, Limits(10, 100, 5_000), WINDOW)
    # o3 weighs 10.1 kg: passed over for o1 behind it.
    assert by_weight.fulfilment_orders == ("o2", "o1")


def test_express_orders_go_into_the_earliest_list() -> None:
    (first,) = plan(Strategy.BATCH, ALL, BINS, Limits(1, 100, 100_000), WINDOW)
    assert first.fulfilment_orders == ("o2",)
    (second,) = plan(Strategy.BATCH, [O1, O3], BINS, Limits(1, 100, 100_000), WINDOW)
    assert second.fulfilment_orders == ("o3",)


def test_an_order_bigger_than_a_cart_is_still_picked_alone() -> None:
    (planned,) = plan(Strategy.BATCH, [O3, O1], BINS, Limits(10, 1, 100), WINDOW)
    assert planned.fulfilment_orders == ("o3",)


def test_zone_splits_the_batch_by_the_zone_of_each_bin_keeping_the_totes() -> None:
    ambient, cold = plan(Strategy.ZONE, ALL, BINS, WIDE, WINDOW)
    assert (ambient.zone, cold.zone) == ("ambient", "cold")
    assert ambient.fulfilment_orders == ("o2", "o3", "o1")
    assert walk(ambient) == [
        ("A-01-02", "SKU-4", 5, [("o3", 2, 5)]),
        ("A-03-01", "SKU-2", 1, [("o1", 3, 1)]),
        ("B-03-01", "SKU-5", 1, [("o3", 2, 1)]),
        ("B-01-01", "SKU-1", 3, [("o2", 1, 1), ("o1", 3, 2)]),
    ]
    assert cold.fulfilment_orders == ("o2",)
    assert walk(cold) == [("C-01-01", "SKU-3", 1, [("o2", 1, 1)])]
    assert all(s.zone == "ambient" for s in ambient.stops)


def test_a_wave_takes_every_order_due_in_the_window_across_all_zones() -> None:
    (planned,) = plan(Strategy.WAVE, ALL, BINS, Limits(10, 1, 1), WINDOW)
    # Due by T+3h: o3 (T+1h) and o1 (T+2h); express o2 is due at T+4h. The cart limits
    # do not bound a wave.
    assert planned.fulfilment_orders == ("o3", "o1")
    assert [s.bin_code for s in planned.stops] == ["A-01-02", "A-03-01", "B-03-01", "B-01-01"]
    (late,) = plan(Strategy.WAVE, ALL, BINS, WIDE,
                   Window(due_before=T + timedelta(hours=5),
                          due_after=T + timedelta(minutes=90)))
    assert late.fulfilment_orders == ("o2", "o1")
    assert plan(Strategy.WAVE, ALL, BINS, WIDE, Window(due_before=T)) == []


def test_nothing_waiting_makes_no_list() -> None:
    for strategy in Strategy:
        assert plan(strategy, [], BINS, WIDE, WINDOW) == []


def test_a_short_stop_falls_on_the_least_urgent_order() -> None:
    (planned,) = plan(Strategy.BATCH, ALL, BINS, WIDE, WINDOW)
    shared = planned.stops[3]  # B-01-01: o2 x1 (express), o1 x2
    outcomes = confirm_stop(shared, picked=2)
    assert [(o.allocation.fulfilment_order, o.picked, o.short) for o in outcomes] == [
        ("o2", 1, 0), ("o1", 1, 1)]
    assert [(o.picked, o.short) for o in confirm_stop(shared, picked=0)] == [(0, 1), (0, 2)]
    assert [(o.picked, o.short) for o in confirm_stop(shared, picked=3)] == [(1, 0), (2, 0)]
