"""Stock rules without a server: available units, reorder maths, which drift can be repaired."""

from __future__ import annotations

from decimal import Decimal

from oms_inventory.stock.domain import (
    Drift,
    Figures,
    at_reorder_point,
    available,
    daily_velocity,
    reorder_point,
    repairable,
    suggested_quantity,
)


def test_available_keeps_safety_stock_back_and_never_goes_negative() -> None:
    assert available(on_hand=10, reserved=3, safety_stock=2) == 5
    assert available(on_hand=10, reserved=8, safety_stock=5) == 0
    assert available(on_hand=0, reserved=0, safety_stock=0) == 0


def test_velocity_is_net_reserved_units_per_day_of_the_window() -> None:
    assert daily_velocity(reserved_units=56, released_units=0, window_days=28) == Decimal("2")
    assert daily_velocity(reserved_units=60, released_units=4, window_days=28) == Decimal("2")
    assert daily_velocity(reserved_units=10, released_units=0, window_days=3) == Decimal(
        "3.3333")
    # More given back than taken in the window (reserved before it) is no sale, not a minus.
    assert daily_velocity(reserved_units=1, released_units=5, window_days=28) == 0
    assert daily_velocity(reserved_units=5, released_units=0, window_days=0) == 0


def test_reorder_point_is_lead_time_demand_plus_safety_stock_unless_fixed() -> None:
    assert reorder_point(fixed=0, velocity=Decimal("2"), lead_time_days=10,
                         safety_stock=5) == 25
    # Part of a unit sold during the lead time is a whole unit to keep.
    assert reorder_point(fixed=0, velocity=Decimal("0.25"), lead_time_days=5,
                         safety_stock=0) == 2
    assert reorder_point(fixed=40, velocity=Decimal("2"), lead_time_days=10,
                         safety_stock=5) == 40


def test_a_level_is_at_its_reorder_point_at_or_below_it_and_only_if_it_has_one() -> None:
    assert at_reorder_point(25, 25)
    assert at_reorder_point(0, 25)
    assert not at_reorder_point(26, 25)
    assert not at_reorder_point(0, 0)


def test_suggestion_orders_up_to_the_point_plus_a_review_period_of_sales() -> None:
    # Point 25, 2 a day for 14 days: up to 53; 20 available -> 33.
    assert suggested_quantity(available_units=20, point=25, velocity=Decimal("2"),
                              review_days=14) == 33
    # Nothing sells: just enough to lift the level above its (fixed) point.
    assert suggested_quantity(available_units=10, point=10, velocity=Decimal(0),
                              review_days=14) == 1
    assert suggested_quantity(available_units=100, point=10, velocity=Decimal(1),
                              review_days=14) == 0


def test_only_a_ledger_that_adds_up_to_a_valid_level_can_be_written_back() -> None:
    assert repairable(Drift("n", "s", Figures(5, 0), Figures(4, 4)))
    assert not repairable(Drift("n", "s", Figures(5, 0), Figures(2, 3)))
    assert not repairable(Drift("n", "s", Figures(5, 0), Figures(2, -1)))
