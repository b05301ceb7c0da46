"""Inspection rules, pure: grades, the disposition each grade leads to, and the reconciliation
of a receipt with its RMA. The package docstring says the rules and why."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from oms_platform.errors import Violations

MAX_RECEIPT_GROUPS = 500
"""Graded groups per receipt (a group is units of one SKU with one grade)."""
MAX_RECEIPT_UNITS = 10_000
"""Units per receipt: a parcel, or a pallet of a business customer's returns."""


class Grade(StrEnum):
    RESELLABLE = "RESELLABLE"
    REFURBISH = "REFURBISH"
    DAMAGED = "DAMAGED"
    WRONG_ITEM = "WRONG_ITEM"
    MISSING = "MISSING"
    """Announced and not found: derived by the reconciliation, never graded by hand."""


class DamageCause(StrEnum):
    UNKNOWN = "UNKNOWN"
    CARRIER = "CARRIER"
    DEFECT = "DEFECT"
    CUSTOMER = "CUSTOMER"


class Disposition(StrEnum):
    RESTOCK = "RESTOCK"
    REFURBISH = "REFURBISH"
    SCRAP = "SCRAP"
    RETURN_TO_VENDOR = "RETURN_TO_VENDOR"
    HOLD = "HOLD"
    """Kept aside for a person: neither stocked nor disposed of."""
    NONE = "NONE"
    """Nothing to dispose of (a missing unit)."""


class Discrepancy(StrEnum):
    SHORT = "SHORT"
    EXTRA = "EXTRA"
    WRONG_SKU = "WRONG_SKU"
    WRONG_ITEM = "WRONG_ITEM"


# The returns.v1 ReturnReason names (without their prefix) whose damage has a known cause.
REASON_CAUSE: Mapping[str, DamageCause] = {
    "DAMAGED": DamageCause.CARRIER,
    "DEFECTIVE": DamageCause.DEFECT,
}


@dataclass(frozen=True)
class Rule:
    """What a grade leads to."""

    disposition: Disposition
    refundable: bool
    carrier_claim: bool = False
    """The units are claimed from the carrier that damaged them."""


@dataclass(frozen=True)
class GradeRules:
    """Dispositions per grade, and per damage cause for damaged units."""

    by_grade: Mapping[Grade, Rule]
    damaged: Mapping[DamageCause, Rule]

    def rule(self, grade: Grade, cause: DamageCause = DamageCause.UNKNOWN) -> Rule:
        return self.damaged[cause] if grade is Grade.DAMAGED else self.by_grade[grade]


DEFAULT_RULES = GradeRules(
    by_grade={
        Grade.RESELLABLE: Rule(Disposition.RESTOCK, refundable=True),
        Grade.REFURBISH: Rule(Disposition.REFURBISH, refundable=True),
        Grade.WRONG_ITEM: Rule(Disposition.HOLD, refundable=False),
        Grade.MISSING: Rule(Disposition.NONE, refundable=False),
    },
    damaged={
        DamageCause.CARRIER: Rule(Disposition.SCRAP, refundable=True, carrier_claim=True),
        DamageCause.DEFECT: Rule(Disposition.RETURN_TO_VENDOR, refundable=True),
        DamageCause.CUSTOMER: Rule(Disposition.HOLD, refundable=False),
        DamageCause.UNKNOWN: Rule(Disposition.HOLD, refundable=False),
    },
)

HELD = Rule(Disposition.HOLD, refundable=False)
"""Units the reconciliation sets aside: extra units and wrong SKUs."""


@dataclass(frozen=True)
class AnnouncedLine:
    """Units of one order line the RMA announced."""

    line_id: str
    sku: str
    quantity: int
    reason: str
    """A ``ReturnReason`` name without its prefix, e.g. ``"DAMAGED"``."""
    received_sku: str = ""
    """For a line returned as the wrong item: the SKU the customer got instead, if known."""

    def accepts(self, sku: str) -> bool:
        return sku == self.sku or (self.reason == "WRONG_ITEM" and bool(self.received_sku)
                                   and sku == self.received_sku)


@dataclass(frozen=True)
class GradedUnits:
    """Units of one scanned SKU that the inspector gave one grade."""

    sku: str
    grade: Grade
    quantity: int
    cause: DamageCause = DamageCause.UNKNOWN


@dataclass(frozen=True)
class Disposed:
    """Units of a line (or of no line) with what happens to them."""

    sku: str
    grade: Grade
    quantity: int
    disposition: Disposition
    refundable: bool
    carrier_claim: bool = False
    restock: bool = False


@dataclass(frozen=True)
class LineInspection:
    """One announced line after inspection."""

    line_id: str
    sku: str
    reason: str
    announced: int
    units: tuple[Disposed, ...]
    """Every unit counted for the line, missing ones included."""

    @property
    def received(self) -> int:
        return sum(u.quantity for u in self.units if u.grade is not Grade.MISSING)

    @property
    def restocked(self) -> int:
        return sum(u.quantity for u in self.units if u.restock)

    @property
    def refundable(self) -> int:
        return sum(u.quantity for u in self.units if u.refundable)


@dataclass(frozen=True)
class Finding:
    """A difference between what arrived and what the RMA announced."""

    kind: Discrepancy
    sku: str
    quantity: int
    line_id: str = ""
    """The line it concerns; empty for a SKU no line announced."""


@dataclass(frozen=True)
class ReturnedUnits:
    """A ``returns.v1.ReturnedLine``: units of an order line received, restocked or not."""

    line_id: str
    sku: str
    quantity: int
    reason: str
    restock: bool


@dataclass(frozen=True)
class Inspection:
    lines: tuple[LineInspection, ...]
    findings: tuple[Finding, ...]
    held: tuple[Disposed, ...] = field(default=())
    """Units that belong to no line's count: extra units, wrong SKUs and wrong items."""

    @property
    def needs_review(self) -> bool:
        return bool(self.findings) or any(
            u.disposition is Disposition.HOLD for line in self.lines for u in line.units)

    def returned_lines(self) -> list[ReturnedUnits]:
        """The lines of ``ReturnReceived``: per order line, its restocked units, then its
        other received units."""
        lines: list[ReturnedUnits] = []
        for line in self.lines:
            restocked, received = line.restocked, line.received
            if restocked:
                lines.append(ReturnedUnits(line.line_id, line.sku, restocked,
                                           line.reason, restock=True))
            if received > restocked:
                lines.append(ReturnedUnits(line.line_id, line.sku, received - restocked,
                                           line.reason, restock=False))
        return lines


def check_receipt(violations: Violations, path: str, groups: Sequence[GradedUnits]) -> None:
    """Every violation of a receipt as an inspector entered it."""
    if len(groups) > MAX_RECEIPT_GROUPS:
        violations.add(path, f"at most {MAX_RECEIPT_GROUPS} graded groups")
        return
    total = 0
    for index, group in enumerate(groups):
        prefix = f"{path}[{index}]"
        violations.require(bool(group.sku.strip()), f"{prefix}.sku", "required")
        violations.require(group.quantity > 0, f"{prefix}.quantity", "must be at least 1")
        violations.require(group.grade is not Grade.MISSING, f"{prefix}.grade",
                           "missing units are the ones not received: leave them out")
        violations.require(group.cause is DamageCause.UNKNOWN or group.grade is Grade.DAMAGED,
                           f"{prefix}.cause", "only damaged units have a damage cause")
        total += max(group.quantity, 0)
    violations.require(total <= MAX_RECEIPT_UNITS, path, f"at most {MAX_RECEIPT_UNITS} units")


_FILL_ORDER = {Grade.RESELLABLE: 0, Grade.REFURBISH: 1, Grade.DAMAGED: 2}


def _disposed(units: GradedUnits, quantity: int, line: AnnouncedLine | None,
              rules: GradeRules) -> Disposed:
    cause = units.cause
    if units.grade is Grade.DAMAGED and cause is DamageCause.UNKNOWN and line is not None:
        cause = REASON_CAUSE.get(line.reason, DamageCause.UNKNOWN)
    rule = rules.rule(units.grade, cause)
    if line is not None and units.sku != line.sku and rule.disposition is Disposition.RESTOCK:
        # The item sent in error: ReturnReceived can only restock the line's own SKU, so a
        # person books it in under its own; it is still the customer's return, refunded.
        rule = Rule(Disposition.HOLD, rule.refundable, rule.carrier_claim)
    return Disposed(units.sku, units.grade, quantity, rule.disposition, rule.refundable,
                    rule.carrier_claim, restock=rule.disposition is Disposition.RESTOCK)


@dataclass
class _Tally:
    """The reconciliation as it goes: units left to find per announced line, what each
    line counted, what was set aside and why."""

    announced: Sequence[AnnouncedLine]
    rules: GradeRules
    left: list[int]
    counted: list[list[Disposed]]
    held: list[Disposed] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    extra: dict[tuple[str, str], int] = field(default_factory=dict)

    def wrong_item(self, units: GradedUnits) -> None:
        line = next((ln for ln in self.announced if ln.accepts(units.sku)), None)
        self.held.append(_disposed(units, units.quantity, None, self.rules))
        self.findings.append(Finding(Discrepancy.WRONG_ITEM, units.sku, units.quantity,
                                     line.line_id if line else ""))

    def fill(self, units: GradedUnits) -> None:
        remaining = units.quantity
        matching = [i for i, ln in enumerate(self.announced) if ln.accepts(units.sku)]
        for index in matching:
            take = min(remaining, self.left[index])
            if take:
                self.counted[index].append(
                    _disposed(units, take, self.announced[index], self.rules))
                self.left[index] -= take
                remaining -= take
        if not remaining:
            return
        self.held.append(Disposed(units.sku, units.grade, remaining, HELD.disposition,
                                  HELD.refundable))
        if matching:
            key = (self.announced[matching[-1]].line_id, units.sku)
            self.extra[key] = self.extra.get(key, 0) + remaining
        else:
            self.findings.append(Finding(Discrepancy.WRONG_SKU, units.sku, remaining))

    def line(self, index: int) -> LineInspection:
        line, units, left = self.announced[index], self.counted[index], self.left[index]
        if left:
            missing = self.rules.rule(Grade.MISSING)
            units.append(Disposed(line.sku, Grade.MISSING, left, missing.disposition,
                                  missing.refundable))
            self.findings.append(Finding(Discrepancy.SHORT, line.sku, left, line.line_id))
        return LineInspection(line.line_id, line.sku, line.reason, line.quantity, tuple(units))


def inspect(announced: Sequence[AnnouncedLine], groups: Iterable[GradedUnits],
            rules: GradeRules = DEFAULT_RULES) -> Inspection:
    """The receipt reconciled with the RMA: every unit counted once, on a line or held. The
    best grades fill the announcement first."""
    tally = _Tally(announced, rules, [line.quantity for line in announced],
                   [[] for _ in announced])
    for units in sorted(groups, key=lambda g: _FILL_ORDER.get(g.grade, len(_FILL_ORDER))):
        if units.grade is Grade.WRONG_ITEM:
            tally.wrong_item(units)
        else:
            tally.fill(units)
    tally.findings.extend(Finding(Discrepancy.EXTRA, sku, quantity, line_id)
                          for (line_id, sku), quantity in tally.extra.items())
    lines = tuple(tally.line(index) for index in range(len(announced)))
    return Inspection(lines, tuple(tally.findings), tuple(tally.held))
