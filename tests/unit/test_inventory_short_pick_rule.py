"""The rule of a short pick at a node: what leaves on-hand and the line's reservation, and
what is allocated again elsewhere; and the key that claims a short pick once."""

from __future__ import annotations

import pytest
from oms_inventory.allocation.domain import ShortPick, short_pick, short_pick_key
from oms_inventory.catalogue.domain import MAX_REQUEST_ID_LENGTH


def test_the_missing_units_leave_on_hand_and_the_line_and_are_allocated_again() -> None:
    # 10 on hand, 6 reserved of which this line holds 4; the picker finds 3 short.
    assert short_pick(shortfall=3, on_hand=10, reserved=6, line_reserved=4) == ShortPick(3, 3, 3)


def test_a_line_short_more_than_it_holds_here_moves_only_what_it_holds() -> None:
    # The line holds 2 at this node (the rest elsewhere or shipped); the bin was 5 short.
    assert short_pick(shortfall=5, on_hand=10, reserved=2, line_reserved=2) == ShortPick(5, 2, 2)


def test_on_hand_never_drops_below_what_other_lines_hold() -> None:
    # 5 on hand, 5 reserved (this line 1, others 4): on-hand may lose only this line's unit;
    # the count task finds out whether the others' units are there.
    effect = short_pick(shortfall=3, on_hand=5, reserved=5, line_reserved=1)
    assert effect == ShortPick(1, 1, 1)
    assert 5 - effect.on_hand_drop >= 5 - effect.reserved_drop


def test_a_line_with_nothing_reserved_here_moves_nothing_but_takes_the_lost_units() -> None:
    assert short_pick(shortfall=2, on_hand=4, reserved=1, line_reserved=0) == ShortPick(2, 0, 0)
    assert short_pick(shortfall=2, on_hand=0, reserved=0, line_reserved=0) == ShortPick(0, 0, 0)


@pytest.mark.parametrize("on_hand,reserved,line,short", [
    (on_hand, reserved, line, short)
    for on_hand in range(0, 6) for reserved in range(0, on_hand + 1)
    for line in range(0, reserved + 1) for short in range(0, 7)])
def test_the_level_stays_valid_whatever_the_figures(on_hand: int, reserved: int, line: int,
                                                   short: int) -> None:
    effect = short_pick(shortfall=short, on_hand=on_hand, reserved=reserved,
                        line_reserved=line)
    assert 0 <= effect.reserved_drop <= min(short, line)
    assert effect.reallocate == effect.reserved_drop
    assert effect.on_hand_drop <= short
    assert 0 <= reserved - effect.reserved_drop <= on_hand - effect.on_hand_drop


def test_the_key_names_the_short_and_fits_the_ledger() -> None:
    key = short_pick_key("pickLists/7", "orders/42", "1", "A-01")
    assert key == "short:pickLists/7:orders/42:1:A-01"
    assert key != short_pick_key("pickLists/7", "orders/42", "1", "A-02")
    long = short_pick_key("pickLists/" + "p" * 60, "orders/" + "o" * 60, "1", "B" * 30)
    assert len(long) <= MAX_REQUEST_ID_LENGTH
    assert long == short_pick_key("pickLists/" + "p" * 60, "orders/" + "o" * 60, "1", "B" * 30)
    assert long != short_pick_key("pickLists/" + "p" * 60, "orders/" + "o" * 60, "2", "B" * 30)
