"""The progress state machine of a fulfilment order at a 3PL or a dropship supplier, and the
status a fulfilment order takes from its lines and what of them has shipped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oms_fulfilment.fulfilment_orders.domain import LineState, Status, cancel_units, status_of
from oms_fulfilment.third_party.domain import (
    Line,
    Progress,
    ProgressRefused,
    Report,
    Shipment,
    apply,
    furthest,
)

LINES = (Line("l1", 3), Line("l2", 1))


def ship(*units: tuple[str, int], tracking: str = "T1") -> Shipment:
    return Shipment("ups", "ups_ground", tracking, units=tuple(units))


def test_steps_move_forward_and_may_be_skipped() -> None:
    assert apply(Progress.REQUESTED, LINES, Report(Progress.ACCEPTED)).progress is (
        Progress.ACCEPTED)
    assert apply(Progress.ACCEPTED, LINES, Report(Progress.PACKED)).progress is Progress.PACKED


@pytest.mark.parametrize(("current", "reported"), [
    (Progress.PICKED, Progress.ACCEPTED), (Progress.PACKED, Progress.PICKED),
    (Progress.PICKED, Progress.PICKED), (Progress.SHIPPED, Progress.PACKED)])
def test_a_step_back_or_repeated_is_refused(current: Progress, reported: Progress) -> None:
    with pytest.raises(ProgressRefused):
        apply(current, LINES, Report(reported))


def test_a_sole_package_without_lines_holds_every_unit_left() -> None:
    lines = (Line("l1", 3, shipped=1), Line("l2", 1))
    outcome = apply(Progress.SHIPPED, lines, Report(Progress.SHIPPED, (ship(),)))
    assert outcome.shipments[0].units == (("l1", 2), ("l2", 1))
    assert outcome.shorts == {}


def test_several_packages_ship_what_they_name_and_the_order_may_ship_again() -> None:
    outcome = apply(Progress.PACKED, LINES, Report(Progress.SHIPPED, (
        ship(("l1", 1), ("l1", 1)), ship(("l2", 1), tracking="T2"))))
    assert [s.units for s in outcome.shipments] == [(("l1", 2),), (("l2", 1),)]
    assert furthest(Progress.PACKED, outcome) is Progress.SHIPPED
    after = (Line("l1", 3, shipped=2), Line("l2", 1, shipped=1))
    assert apply(Progress.SHIPPED, after, Report(Progress.SHIPPED, (
        ship(("l1", 1)),))).shipments[0].units == (("l1", 1),)


@pytest.mark.parametrize("report", [
    Report(Progress.SHIPPED, (ship(("l1", 4)),)),  # more than the line has
    Report(Progress.SHIPPED, (ship(("l1", 2)), ship(("l1", 2), tracking="T2"))),
    Report(Progress.SHIPPED, (ship(("l9", 1)),)),  # no such line
    Report(Progress.SHIPPED, (ship(), ship(("l1", 1), tracking="T2"))),
    Report(Progress.SHORT_SHIPPED, (ship(),)),  # everything shipped: nothing is short
])
def test_impossible_shipments_are_refused(report: Report) -> None:
    with pytest.raises(ProgressRefused):
        apply(Progress.PACKED, LINES, report)


def test_a_short_shipment_closes_the_order_with_what_is_left_short() -> None:
    outcome = apply(Progress.PICKED, LINES, Report(Progress.SHORT_SHIPPED, (ship(("l1", 2)),)))
    assert outcome.shorts == {"l1": 1, "l2": 1}
    closed = (Line("l1", 3, shipped=2, short=1), Line("l2", 1, short=1))
    for report in (Report(Progress.SHIPPED, (ship(("l1", 1)),)), Report(Progress.PACKED)):
        with pytest.raises(ProgressRefused):
            apply(Progress.SHORT_SHIPPED, closed, report)


def test_a_cancelled_or_fully_shipped_order_takes_no_report() -> None:
    with pytest.raises(ProgressRefused):
        apply(Progress.ACCEPTED, LINES, Report(Progress.PICKED), cancelled=True)
    with pytest.raises(ProgressRefused):
        apply(Progress.SHIPPED, (Line("l1", 3, shipped=3), Line("l2", 1, cancelled=1)),
              Report(Progress.SHIPPED, (ship(),)))


REPORTS = st.sampled_from([
    Report(Progress.ACCEPTED), Report(Progress.PICKED), Report(Progress.PACKED),
    Report(Progress.SHIPPED, (ship(("l1", 1)),)), Report(Progress.SHIPPED, (ship(),)),
    Report(Progress.SHORT_SHIPPED, ()), Report(Progress.SHIPPED, (ship(("l2", 2)),))])


@given(st.lists(REPORTS, max_size=12))
def test_whatever_arrives_progress_only_grows_and_no_unit_ships_twice(
        reports: list[Report]) -> None:
    """Reports in any order and repeated: each applied one moves the step forward (or
    ships more), no line ever ships or shorts more than it holds."""
    progress, lines = Progress.REQUESTED, LINES
    for report in reports:
        try:
            outcome = apply(progress, lines, report)
        except ProgressRefused:
            continue
        after = furthest(progress, outcome)
        assert list(Progress).index(after) >= list(Progress).index(progress)
        shipped: dict[str, int] = {}
        for shipment in outcome.shipments:
            for line_id, units in shipment.units:
                shipped[line_id] = shipped.get(line_id, 0) + units
        lines = tuple(Line(line.line_id, line.quantity,
                           shipped=line.shipped + shipped.get(line.line_id, 0),
                           short=line.short + outcome.shorts.get(line.line_id, 0))
                      for line in lines)
        assert all(line.left >= 0 for line in lines)
        progress = after


def test_the_status_follows_what_shipped() -> None:
    picked = [LineState(2, 0, 2, 0, 0)]
    assert status_of(picked) is Status.PICKED
    assert status_of(picked, shipped=2) is Status.SHIPPED
    # A 3PL's shipped units are its picked ones.
    assert status_of([LineState(2, 0, 1, 0, 0)], shipped=1, third_party=True) is (
        Status.PARTIALLY_SHIPPED)
    assert status_of([LineState(2, 0, 0, 0, 0)], third_party=True) is (
        Status.AWAITING_THIRD_PARTY)
    assert status_of([LineState(2, 0, 0, 2, 0)], third_party=True) is Status.SHORTED
    assert status_of([LineState(2, 0, 1, 1, 0)], shipped=1, third_party=True) is (
        Status.SHIPPED)


def test_units_that_shipped_are_never_put_back() -> None:
    line = LineState(quantity=3, allocated=0, picked=3, short=0, cancelled=0)
    taken = cancel_units(line, None, shipped=2)
    assert (taken.from_open, taken.from_allocated, taken.put_back) == (0, 0, 1)
    assert cancel_units(line, None, shipped=3).units == 0
