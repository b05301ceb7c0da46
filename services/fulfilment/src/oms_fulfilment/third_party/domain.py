"""The progress of a fulfilment order at a 3PL or a dropship supplier, as a state machine.
Plain Python: the store keeps the facts, the API turns outcomes into rows and events.

The facts only grow: the furthest step reported (``Progress``) and, per line, units shipped
and units short. A report is applied only when it moves the order forward:

- ACCEPTED, PICKED, PACKED: each later than the step reached (steps may be skipped), and
  only before anything shipped;
- SHIPPED: packages, each with the units of the lines it holds, at most what is left of
  each line; an order may ship in several reports (PARTIALLY_SHIPPED between them);
- SHORT_SHIPPED: the closing report: its packages ship, and every unit still left is short
  (at least one must be, or the report is a SHIPPED one).

Anything else (a step back or repeated, a closed or cancelled order, an unknown line, more
units than are left) is refused as ``ProgressRefused`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from oms_platform.errors import FailedPrecondition

MAX_PACKAGES = 50
MAX_PACKAGE_LINES = 500


class Mode(StrEnum):
    IN_HOUSE = "IN_HOUSE"
    THIRD_PARTY_LOGISTICS = "THIRD_PARTY_LOGISTICS"
    DROPSHIP = "DROPSHIP"


class Progress(StrEnum):
    REQUESTED = "REQUESTED"
    ACCEPTED = "ACCEPTED"
    PICKED = "PICKED"
    PACKED = "PACKED"
    SHIPPED = "SHIPPED"
    SHORT_SHIPPED = "SHORT_SHIPPED"


RANK = {step: rank for rank, step in enumerate(Progress)}
STEPS = frozenset({Progress.ACCEPTED, Progress.PICKED, Progress.PACKED})


class ProgressRefused(FailedPrecondition):
    reason = "PROGRESS_REFUSED"


@dataclass(frozen=True)
class Line:
    """A fulfilment order line as the hand-off sees it."""

    line_id: str
    quantity: int
    shipped: int = 0
    short: int = 0
    cancelled: int = 0

    @property
    def left(self) -> int:
        return self.quantity - self.shipped - self.short - self.cancelled


@dataclass(frozen=True)
class Shipment:
    """One package as reported: its carrier and tracking, and units per line id (empty: the
    report's only package, holding every unit left)."""

    carrier: str
    carrier_service: str
    tracking_number: str
    tracking_url: str = ""
    units: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Report:
    progress: Progress
    packages: tuple[Shipment, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What an accepted report does: the step reached, the packages to ship (their units
    resolved, in the lines' order) and the units that are short per line id."""

    progress: Progress
    shipments: tuple[Shipment, ...]
    shorts: Mapping[str, int]


def _closed(progress: Progress, lines: Sequence[Line], cancelled: bool) -> bool:
    return cancelled or progress is Progress.SHORT_SHIPPED or all(
        line.left <= 0 for line in lines)


def apply(progress: Progress, lines: Sequence[Line], report: Report, *,
          cancelled: bool = False) -> Outcome:
    """The outcome of ``report`` on an order at ``progress`` with ``lines``; raises
    ProgressRefused when it cannot be applied."""
    if _closed(progress, lines, cancelled):
        raise ProgressRefused(f"the order is closed ({'cancelled' if cancelled else progress})")
    if report.progress in STEPS:
        if progress is Progress.SHIPPED:
            raise ProgressRefused(f"{report.progress} after units shipped")
        if RANK[report.progress] <= RANK[progress]:
            raise ProgressRefused(f"{report.progress} after {progress}: progress never goes "
                                  "back")
        return Outcome(report.progress, (), {})
    if report.progress not in (Progress.SHIPPED, Progress.SHORT_SHIPPED):
        raise ProgressRefused(f"{report.progress} is not reported")
    left = {line.line_id: line.left for line in lines}
    shipments = tuple(_resolve(package, left, alone=len(report.packages) == 1)
                      for package in report.packages)
    taken: dict[str, int] = {}
    for shipment in shipments:
        for line_id, units in shipment.units:
            if line_id not in left:
                raise ProgressRefused(f"the order has no line {line_id!r}")
            taken[line_id] = taken.get(line_id, 0) + units
    over = [line_id for line_id, units in taken.items() if units > left[line_id]]
    if over:
        raise ProgressRefused("more units shipped than are left of line(s) " + ", ".join(over))
    shorts: dict[str, int] = {}
    if report.progress is Progress.SHORT_SHIPPED:
        shorts = {line_id: units - taken.get(line_id, 0) for line_id, units in left.items()
                  if units - taken.get(line_id, 0) > 0}
        if not shorts:
            raise ProgressRefused("nothing is left to be short: report SHIPPED")
    elif not shipments:
        raise ProgressRefused("SHIPPED names no package")
    return Outcome(report.progress, shipments, shorts)


def _resolve(package: Shipment, left: Mapping[str, int], *, alone: bool) -> Shipment:
    if package.units:
        merged: dict[str, int] = {}
        for line_id, units in package.units:
            merged[line_id] = merged.get(line_id, 0) + units
        return Shipment(package.carrier, package.carrier_service, package.tracking_number,
                        package.tracking_url, tuple(merged.items()))
    if not alone:
        raise ProgressRefused("a package without lines must be the report's only one")
    return Shipment(package.carrier, package.carrier_service, package.tracking_number,
                    package.tracking_url,
                    tuple((line_id, units) for line_id, units in left.items() if units > 0))


def furthest(progress: Progress, outcome: Outcome) -> Progress:
    """The step recorded after an outcome: SHIPPED and SHORT_SHIPPED always replace a step."""
    return outcome.progress if RANK[outcome.progress] >= RANK[progress] else progress
