"""Inspection without a server: grades, dispositions, and a receipt reconciled with its RMA.
Every expected count is worked out by hand in the comment beside it."""

from __future__ import annotations

from dataclasses import replace

from oms_platform.errors import Violations
from oms_returns.inspection.domain import (
    DEFAULT_RULES,
    AnnouncedLine,
    DamageCause,
    Discrepancy,
    Disposition,
    Finding,
    Grade,
    GradedUnits,
    GradeRules,
    ReturnedUnits,
    Rule,
    check_receipt,
    inspect,
)

MUG = AnnouncedLine("1", "MUG", 3, "NO_LONGER_NEEDED")
LAMP = AnnouncedLine("2", "LAMP", 1, "DEFECTIVE")


def test_a_receipt_as_announced_restocks_and_refunds_every_resellable_unit() -> None:
    result = inspect([MUG], [GradedUnits("MUG", Grade.RESELLABLE, 3)])
    (line,) = result.lines
    # 3 announced, 3 resellable: 3 received, 3 restocked, 3 refunded; nothing to review.
    assert (line.received, line.restocked, line.refundable) == (3, 3, 3)
    assert result.findings == ()
    assert not result.needs_review
    assert result.returned_lines() == [ReturnedUnits("1", "MUG", 3, "NO_LONGER_NEEDED", True)]


def test_each_grade_leads_to_its_default_disposition() -> None:
    rules = DEFAULT_RULES
    assert rules.rule(Grade.RESELLABLE) == Rule(Disposition.RESTOCK, refundable=True)
    assert rules.rule(Grade.REFURBISH) == Rule(Disposition.REFURBISH, refundable=True)
    assert rules.rule(Grade.DAMAGED, DamageCause.CARRIER) == Rule(
        Disposition.SCRAP, refundable=True, carrier_claim=True)
    assert rules.rule(Grade.DAMAGED, DamageCause.DEFECT) == Rule(
        Disposition.RETURN_TO_VENDOR, refundable=True)
    assert rules.rule(Grade.DAMAGED, DamageCause.CUSTOMER) == Rule(
        Disposition.HOLD, refundable=False)
    assert rules.rule(Grade.WRONG_ITEM) == Rule(Disposition.HOLD, refundable=False)
    assert rules.rule(Grade.MISSING) == Rule(Disposition.NONE, refundable=False)


def test_mixed_grades_of_one_line_split_into_a_restocked_and_a_kept_event_line() -> None:
    result = inspect([MUG], [
        GradedUnits("MUG", Grade.RESELLABLE, 1),
        GradedUnits("MUG", Grade.REFURBISH, 1),
        GradedUnits("MUG", Grade.DAMAGED, 1, DamageCause.CUSTOMER),
    ])
    (line,) = result.lines
    # 1 resellable (restock, refund) + 1 refurbish (refund) + 1 customer damage (hold):
    # received 3, restocked 1, refunded 2.
    assert (line.received, line.restocked, line.refundable) == (3, 1, 2)
    assert [u.disposition for u in line.units] == [
        Disposition.RESTOCK, Disposition.REFURBISH, Disposition.HOLD]
    # A hold needs a person even though the counts match.
    assert result.findings == () and result.needs_review
    # Inventory restocks once per (return, line): one restock line of 1, one of the other 2.
    assert result.returned_lines() == [
        ReturnedUnits("1", "MUG", 1, "NO_LONGER_NEEDED", True),
        ReturnedUnits("1", "MUG", 2, "NO_LONGER_NEEDED", False),
    ]


def test_damage_without_a_recorded_cause_takes_it_from_the_return_reason() -> None:
    damaged = AnnouncedLine("3", "VASE", 1, "DAMAGED")
    result = inspect([LAMP, damaged, replace(MUG, quantity=1)], [
        GradedUnits("LAMP", Grade.DAMAGED, 1),
        GradedUnits("VASE", Grade.DAMAGED, 1),
        GradedUnits("MUG", Grade.DAMAGED, 1),
    ])
    lamp, vase, mug = (line.units[0] for line in result.lines)
    # Returned as defective → a defect → back to the vendor, refunded.
    assert (lamp.disposition, lamp.refundable) == (Disposition.RETURN_TO_VENDOR, True)
    # Returned as damaged → damaged on the way out → scrapped, refunded, claimed.
    assert (vase.disposition, vase.refundable, vase.carrier_claim) == (
        Disposition.SCRAP, True, True)
    # Returned as no longer needed, damaged: nobody knows whose fault → held, not refunded.
    assert (mug.disposition, mug.refundable) == (Disposition.HOLD, False)


def test_fewer_units_than_announced_are_missing_and_not_refunded() -> None:
    result = inspect([MUG], [GradedUnits("MUG", Grade.RESELLABLE, 2)])
    (line,) = result.lines
    # 3 announced - 2 found = 1 missing: received 2, refunded 2.
    assert (line.received, line.refundable) == (2, 2)
    assert line.units[-1].grade is Grade.MISSING and line.units[-1].quantity == 1
    assert result.findings == (Finding(Discrepancy.SHORT, "MUG", 1, "1"),)
    assert result.needs_review


def test_extra_units_are_held_and_the_best_grades_fill_the_announcement() -> None:
    result = inspect([MUG], [
        GradedUnits("MUG", Grade.DAMAGED, 2, DamageCause.CUSTOMER),
        GradedUnits("MUG", Grade.RESELLABLE, 3),
    ])
    (line,) = result.lines
    # 5 arrived for 3 announced: the 3 resellable count (restocked, refunded), the 2
    # damaged ones are extra and held.
    assert (line.received, line.restocked, line.refundable) == (3, 3, 3)
    assert result.findings == (Finding(Discrepancy.EXTRA, "MUG", 2, "1"),)
    assert [(u.sku, u.quantity, u.disposition) for u in result.held] == [
        ("MUG", 2, Disposition.HOLD)]
    assert result.returned_lines() == [ReturnedUnits("1", "MUG", 3, "NO_LONGER_NEEDED", True)]


def test_a_sku_no_line_announced_is_a_wrong_sku_and_the_line_is_short() -> None:
    result = inspect([LAMP], [GradedUnits("TOASTER", Grade.RESELLABLE, 1)])
    (line,) = result.lines
    # The toaster matches no line: held. The lamp's 1 unit is missing.
    assert line.received == 0 and line.refundable == 0
    assert set(result.findings) == {Finding(Discrepancy.WRONG_SKU, "TOASTER", 1),
                                    Finding(Discrepancy.SHORT, "LAMP", 1, "2")}
    assert result.returned_lines() == []


def test_a_unit_graded_wrong_item_is_held_and_leaves_its_line_short() -> None:
    result = inspect([LAMP], [GradedUnits("LAMP", Grade.WRONG_ITEM, 1)])
    # Right barcode, wrong thing inside: held, and the lamp is still missing.
    assert set(result.findings) == {Finding(Discrepancy.WRONG_ITEM, "LAMP", 1, "2"),
                                    Finding(Discrepancy.SHORT, "LAMP", 1, "2")}
    assert result.held[0].disposition is Disposition.HOLD


def test_the_item_sent_in_error_counts_as_received_but_is_never_restocked_as_the_line() -> None:
    shipped_wrong = AnnouncedLine("4", "SHIRT-M", 1, "WRONG_ITEM", received_sku="SHIRT-L")
    result = inspect([shipped_wrong], [GradedUnits("SHIRT-L", Grade.RESELLABLE, 1)])
    (line,) = result.lines
    # The customer returns the L we sent instead of the M: received and refunded, but the
    # event names SHIRT-M, so restocking it would add an M nobody has: held instead.
    assert (line.received, line.restocked, line.refundable) == (1, 0, 1)
    assert line.units[0].disposition is Disposition.HOLD
    assert result.findings == ()
    assert result.returned_lines() == [ReturnedUnits("4", "SHIRT-M", 1, "WRONG_ITEM", False)]


def test_two_lines_of_one_sku_fill_first_to_last() -> None:
    first, second = AnnouncedLine("1", "MUG", 2, "OTHER"), AnnouncedLine("5", "MUG", 2, "OTHER")
    result = inspect([first, second], [GradedUnits("MUG", Grade.RESELLABLE, 3)])
    # 3 units: line 1 takes 2, line 5 takes 1 and misses 1.
    assert [line.received for line in result.lines] == [2, 1]
    assert result.findings == (Finding(Discrepancy.SHORT, "MUG", 1, "5"),)


def test_dispositions_are_configurable_per_grade_and_cause() -> None:
    rules = GradeRules(
        by_grade={**DEFAULT_RULES.by_grade,
                  Grade.REFURBISH: Rule(Disposition.RETURN_TO_VENDOR, refundable=True)},
        damaged={**DEFAULT_RULES.damaged,
                 DamageCause.CUSTOMER: Rule(Disposition.SCRAP, refundable=False)},
    )
    result = inspect([MUG], [GradedUnits("MUG", Grade.REFURBISH, 1),
                             GradedUnits("MUG", Grade.DAMAGED, 2, DamageCause.CUSTOMER)],
                     rules)
    assert [u.disposition for u in result.lines[0].units] == [
        Disposition.RETURN_TO_VENDOR, Disposition.SCRAP]


def test_a_receipt_entered_wrong_is_refused_field_by_field() -> None:
    violations = Violations()
    check_receipt(violations, "units", [
        GradedUnits("", Grade.RESELLABLE, 0),
        GradedUnits("MUG", Grade.MISSING, 1),
        GradedUnits("MUG", Grade.RESELLABLE, 1, DamageCause.CARRIER),
    ])
    assert [v.field for v in violations.items] == [
        "units[0].sku", "units[0].quantity", "units[1].grade", "units[2].cause"]
