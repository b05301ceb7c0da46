"""The packing station's rules: scan verification, and the state of a fulfilment order's
packages. Which boxes they go in is ``oms_fulfilment.cartonisation``. Plain Python; the store
keeps a parcel's counters and the plan, the API turns them into messages.

Scan verification
-----------------
A parcel expects units of one or more order lines (a merged shipment holds lines of several
orders). Each scan is a GTIN (GTIN-8, UPC-A/GTIN-12, EAN-13, GTIN-14; compared as GTIN-14, so
the UPC-A and EAN-13 of one product are the same code) or a SKU barcode, and counts against
one line:

1. The code names a line when it equals the line's SKU, or is a GTIN with a valid check
   digit equal to the line's GTIN. A SKU match is tried first: a SKU made only of digits is
   still a SKU.
2. It is accepted into the first named line (in the parcel's order) that still misses units;
   ``for_line`` (the line the packer has selected at the station) restricts it to that line.
3. Otherwise it is refused and changes no line's units:
   - ``EXTRA_UNIT``: it names a line, but every unit of that line is already in the parcel;
     counted against that line.
   - ``WRONG_SKU``: it names no line of the parcel (or not the selected one). Counted against
     ``for_line`` when given, else against the first line still missing units (the wrong unit
     was brought in place of one of them), else against the first line.
   - ``UNREADABLE``: digits shaped like a GTIN whose check digit is wrong and that are no SKU
     of the parcel: a misread, not a picking error, so it is counted by reason only and in no
     line's tally (orders measures picking accuracy from the line tally).
4. The parcel seals only when every unit is scanned; the tally per line (units verified,
   units refused) is `PackingVerified`'s ``lines``. Sealing twice gives the same tally;
   scanning a sealed parcel is refused as a precondition.

Bounds: at most ``MAX_PARCEL_LINES`` lines and ``MAX_PARCEL_UNITS`` units per parcel to
verify.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from oms_platform.errors import FailedPrecondition, Violations
from stdnum import ean

from oms_fulfilment.cartonisation.domain import LineKey

MAX_PARCEL_LINES = 500
MAX_PARCEL_UNITS = 5_000
MAX_CODE_LENGTH = 64

GTIN_LENGTHS = (8, 12, 13, 14)

# ---------------------------------------------------------------------------------------
# Scan verification
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedLine:
    """Units of one order line that the parcel must hold. ``gtin`` is empty for a product
    without one (then only its SKU barcode is accepted)."""

    order: str
    line_id: str
    sku: str
    quantity: int
    gtin: str = ""

    @property
    def key(self) -> LineKey:
        return self.order, self.line_id


class RefusalReason(StrEnum):
    WRONG_SKU = "WRONG_SKU"
    EXTRA_UNIT = "EXTRA_UNIT"
    UNREADABLE = "UNREADABLE"


@dataclass(frozen=True)
class ScanResult:
    """What one scan did. ``line`` is the line it counted against (none for UNREADABLE)."""

    accepted: bool
    line: LineKey | None
    reason: RefusalReason | None
    units_missing: int


@dataclass(frozen=True)
class VerifiedLine:
    """One line of `PackingVerified`: the same fields, field for field."""

    order: str
    line_id: str
    sku: str
    units_verified: int
    units_refused: int


@dataclass(frozen=True)
class PackingTally:
    """`PackingVerified.lines` (every expected line, in the parcel's order) and the refusals
    by reason, UNREADABLE scans included (the floor figure "pack refusals")."""

    lines: tuple[VerifiedLine, ...]
    refusals: Mapping[RefusalReason, int]


class ParcelIncomplete(FailedPrecondition):
    reason = "PARCEL_INCOMPLETE"


class ParcelSealed(FailedPrecondition):
    reason = "PARCEL_SEALED"


def gtin14(code: str) -> str | None:
    """The code as a GTIN-14 when it is a GTIN-8/12/13/14 with a valid check digit."""
    if len(code) in GTIN_LENGTHS and code.isascii() and code.isdigit() and ean.is_valid(code):
        return code.zfill(14)
    return None


def _gtin_shaped(code: str) -> bool:
    return len(code) in GTIN_LENGTHS and code.isascii() and code.isdigit()


def check_expected(lines: Sequence[ExpectedLine]) -> None:
    """Every fault of a parcel's expected lines at once (InvalidArgument)."""
    violations = Violations()
    violations.require(0 < len(lines) <= MAX_PARCEL_LINES, "lines",
                       f"a parcel holds 1 to {MAX_PARCEL_LINES} lines")
    seen: set[LineKey] = set()
    for i, line in enumerate(lines):
        path = f"lines[{i}]"
        violations.require(bool(line.order), f"{path}.order", "must name the order")
        violations.require(bool(line.line_id), f"{path}.line_id", "must name the order line")
        violations.require(bool(line.sku) and len(line.sku) <= MAX_CODE_LENGTH, f"{path}.sku",
                           f"must be 1 to {MAX_CODE_LENGTH} characters")
        violations.require(line.quantity > 0, f"{path}.quantity", "must be at least 1")
        if line.gtin:
            violations.require(gtin14(line.gtin) is not None, f"{path}.gtin",
                               "must be a GTIN-8, -12, -13 or -14 with a valid check digit")
        violations.require(line.key not in seen, path, "names an order line twice")
        seen.add(line.key)
    violations.require(sum(max(line.quantity, 0) for line in lines) <= MAX_PARCEL_UNITS,
                       "lines", f"a parcel holds at most {MAX_PARCEL_UNITS} units")
    violations.raise_if_any()


@dataclass(frozen=True)
class ParcelScans:
    """A parcel being scanned: what it expects and what its scans did so far. Immutable:
    ``scan`` and ``seal`` return the next state, which the store writes back."""

    lines: tuple[ExpectedLine, ...]
    verified: Mapping[LineKey, int] = field(default_factory=dict)
    refused: Mapping[LineKey, int] = field(default_factory=dict)
    refusals: Mapping[RefusalReason, int] = field(default_factory=dict)
    sealed: bool = False

    @classmethod
    def start(cls, lines: Iterable[ExpectedLine]) -> ParcelScans:
        expected = tuple(lines)
        check_expected(expected)
        return cls(expected)

    def missing(self) -> dict[LineKey, int]:
        """Units still to scan, per line that misses any."""
        return {line.key: line.quantity - self.verified.get(line.key, 0)
                for line in self.lines if self.verified.get(line.key, 0) < line.quantity}

    @property
    def units_missing(self) -> int:
        return sum(self.missing().values())

    @property
    def complete(self) -> bool:
        return self.units_missing == 0

    def _names(self, line: ExpectedLine, code: str, as_gtin: str | None) -> bool:
        return line.sku == code or (
            as_gtin is not None and bool(line.gtin) and gtin14(line.gtin) == as_gtin)

    def scan(self, code: str, *, for_line: LineKey | None = None
             ) -> tuple[ParcelScans, ScanResult]:
        if self.sealed:
            raise ParcelSealed("the parcel is sealed; it takes no more scans")
        code = code.strip()
        violations = Violations()
        violations.require(0 < len(code) <= MAX_CODE_LENGTH, "code",
                           f"must be 1 to {MAX_CODE_LENGTH} characters")
        keys = [line.key for line in self.lines]
        if for_line is not None:
            violations.require(for_line in keys, "for_line", "is no line of this parcel")
        violations.raise_if_any()

        candidates = [line for line in self.lines
                      if for_line is None or line.key == for_line]
        named = [line for line in candidates if line.sku == code]
        if not named:
            as_gtin = gtin14(code)
            if as_gtin is None and _gtin_shaped(code):
                return self._refuse(None, RefusalReason.UNREADABLE)
            named = [line for line in candidates if self._names(line, code, as_gtin)]
        for line in named:
            if self.verified.get(line.key, 0) < line.quantity:
                verified = dict(self.verified)
                verified[line.key] = verified.get(line.key, 0) + 1
                after = replace(self, verified=verified)
                return after, ScanResult(True, line.key, None, after.units_missing)
        if named:
            return self._refuse(named[0].key, RefusalReason.EXTRA_UNIT)
        missing = self.missing()
        if for_line is not None:
            blamed = for_line
        else:
            blamed = next((key for key in keys if key in missing), keys[0])
        return self._refuse(blamed, RefusalReason.WRONG_SKU)

    def _refuse(self, line: LineKey | None, reason: RefusalReason
                ) -> tuple[ParcelScans, ScanResult]:
        refused = dict(self.refused)
        if line is not None:
            refused[line] = refused.get(line, 0) + 1
        refusals = dict(self.refusals)
        refusals[reason] = refusals.get(reason, 0) + 1
        after = replace(self, refused=refused, refusals=refusals)
        return after, ScanResult(False, line, reason, after.units_missing)

    def tally(self) -> PackingTally:
        return PackingTally(
            tuple(VerifiedLine(line.order, line.line_id, line.sku,
                               self.verified.get(line.key, 0), self.refused.get(line.key, 0))
                  for line in self.lines),
            {reason: self.refusals[reason] for reason in RefusalReason
             if self.refusals.get(reason)},
        )

    def seal(self) -> tuple[ParcelScans, PackingTally]:
        """Closes the parcel once every unit is in it; its final tally."""
        if not self.sealed:
            missing = self.missing()
            if missing:
                raise ParcelIncomplete(
                    f"{sum(missing.values())} units are not scanned yet",
                    metadata={f"{order}/lines/{line_id}": str(units)
                              for (order, line_id), units in missing.items()})
        return replace(self, sealed=True), self.tally()


# ---------------------------------------------------------------------------------------
# Packages of a fulfilment order
# ---------------------------------------------------------------------------------------


class PackageStatus(StrEnum):
    PACKING = "PACKING"
    SEALED = "SEALED"
    SHIPPED = "SHIPPED"
    CANCELLED = "CANCELLED"


def order_status(packages: Iterable[PackageStatus]) -> str:
    """The fulfilment order's status from its packages' (a fulfilment_orders Status name):
    packing until every package is sealed, then packed, partially shipped while some have
    left, shipped when all have."""
    statuses = [s for s in packages if s is not PackageStatus.CANCELLED]
    shipped = sum(s is PackageStatus.SHIPPED for s in statuses)
    if statuses and shipped == len(statuses):
        return "SHIPPED"
    if shipped:
        return "PARTIALLY_SHIPPED"
    if statuses and all(s is PackageStatus.SEALED for s in statuses):
        return "PACKED"
    return "PACKING"
