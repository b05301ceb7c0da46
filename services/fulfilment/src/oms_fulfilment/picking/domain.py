"""Pick lists as pure rules: which open orders go on a list by each strategy, the stops in
walking order, and how a short stop falls on its orders.

A planner per strategy, in a table (like inventory's allocation strategies): each takes the
candidates most urgent first and the picker's limits, and returns the lists to walk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class Strategy(Enum):
    SINGLE_ORDER = "single_order"
    BATCH = "batch"
    ZONE = "zone"
    WAVE = "wave"


class ShortReason(Enum):
    BIN_EMPTY = "bin_empty"
    DAMAGED = "damaged"


MAX_ORDERS = 100
MAX_UNITS = 2000
MAX_WEIGHT_GRAMS = 100_000
MAX_STOPS = 2000


@dataclass(frozen=True)
class Limits:
    """What one picker carries on one list."""

    max_orders: int
    max_units: int
    max_weight_grams: int


@dataclass(frozen=True)
class Bin:
    bin_code: str
    zone: str
    walk_sequence: int = 0  # 0: not set, walk by the code


@dataclass(frozen=True)
class CandidateLine:
    line_id: str
    order: str
    sku: str
    quantity: int  # units still to pick
    bin_code: str
    unit_weight_grams: int = 0


@dataclass(frozen=True)
class Candidate:
    """An open fulfilment order waiting for a list, with its slotted lines."""

    fulfilment_order: str
    priority: bool
    promised_ship_time: datetime
    release_time: datetime
    lines: tuple[CandidateLine, ...]

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def weight_grams(self) -> int:
        return sum(line.quantity * line.unit_weight_grams for line in self.lines)


@dataclass(frozen=True)
class Allocation:
    fulfilment_order: str
    order: str
    line_id: str
    tote: int
    quantity: int


@dataclass(frozen=True)
class Stop:
    sequence: int
    bin_code: str
    zone: str
    sku: str
    quantity: int
    allocations: tuple[Allocation, ...]  # most urgent order first


@dataclass(frozen=True)
class PlannedList:
    strategy: Strategy
    zone: str  # "" unless a zone list
    fulfilment_orders: tuple[str, ...]  # tote order: tote n is the n-th
    stops: tuple[Stop, ...]
    units: int
    weight_grams: int


def urgency(candidate: Candidate) -> tuple[bool, datetime, datetime, str]:
    """Express first, then the earliest promised ship time, then the earliest release."""
    return (not candidate.priority, candidate.promised_ship_time, candidate.release_time,
            candidate.fulfilment_order)


_CODE = re.compile(r"^\s*([A-Za-z]+|\d+)[-_. ]?(\d+)[-_. ]?(\d+)\s*$")


def parse_bin_code(code: str) -> tuple[int, int, int] | None:
    """(aisle, bay, level) of an "A-01-03"-style code: the aisle a letter run (A=1, ..., Z=26,
    AA=27) or a number, then bay and level numbers; None for a code of another shape."""
    match = _CODE.match(code)
    if match is None:
        return None
    aisle_text, bay, level = match.groups()
    if aisle_text.isdigit():
        aisle = int(aisle_text)
    else:
        aisle = 0
        for letter in aisle_text.upper():
            aisle = aisle * 26 + ord(letter) - ord("A") + 1
    return aisle, int(bay), int(level)


def walk_key(bin_code: str, bins: Mapping[str, Bin]) -> tuple[int, int, int, int, str]:
    """Where a bin comes on the walk. Inventory's walk sequence wins where it is set (the
    node knows its floor best); otherwise serpentine through the aisles: up the odd ones
    (bays ascending), down the even ones (bays descending), levels bottom up at each bay, so
    the picker never walks an aisle twice. Codes of another shape come last, in code order."""
    known = bins.get(bin_code)
    if known is not None and known.walk_sequence > 0:
        return (0, known.walk_sequence, 0, 0, bin_code)
    parsed = parse_bin_code(bin_code)
    if parsed is None:
        return (2, 0, 0, 0, bin_code)
    aisle, bay, level = parsed
    return (1, aisle, bay if aisle % 2 else -bay, level, bin_code)


def zone_of(bin_code: str, bins: Mapping[str, Bin]) -> str:
    known = bins.get(bin_code)
    return known.zone if known is not None else ""


def build_stops(members: Sequence[Candidate], bins: Mapping[str, Bin],
                totes: Mapping[str, int], *, zone: str | None = None) -> tuple[Stop, ...]:
    """One stop per SKU and bin with the total of every member's lines there, in walking
    order; each allocation goes to its order's tote. ``zone`` keeps only that zone's bins."""
    grouped: dict[tuple[str, str], list[Allocation]] = {}
    for candidate in members:
        for line in candidate.lines:
            if line.quantity <= 0:
                continue
            if zone is not None and zone_of(line.bin_code, bins) != zone:
                continue
            grouped.setdefault((line.sku, line.bin_code), []).append(Allocation(
                candidate.fulfilment_order, line.order, line.line_id,
                totes[candidate.fulfilment_order], line.quantity))
    ordered = sorted(grouped.items(), key=lambda item: (walk_key(item[0][1], bins), item[0][0]))
    return tuple(
        Stop(sequence, bin_code, zone_of(bin_code, bins), sku,
             sum(a.quantity for a in allocations), tuple(allocations))
        for sequence, ((sku, bin_code), allocations) in enumerate(ordered, start=1))


def _fill(candidates: Sequence[Candidate], limits: Limits, *,
          carry_bounds: bool = True) -> list[Candidate]:
    """Most urgent first, each order that still fits the picker's limits. An order that does
    not fit is passed over for smaller ones behind it (first fit), except that a list never
    stays empty: an order bigger than a cart alone still has to be picked."""
    chosen: list[Candidate] = []
    units = weight = stops = 0
    for candidate in sorted(candidates, key=urgency):
        if len(chosen) >= limits.max_orders:
            break
        if not candidate.lines:
            continue
        more_stops = len(candidate.lines)
        fits = (not carry_bounds or (units + candidate.units <= limits.max_units
                                     and weight + candidate.weight_grams
                                     <= limits.max_weight_grams))
        if chosen and (not fits or stops + more_stops > MAX_STOPS):
            continue
        chosen.append(candidate)
        units += candidate.units
        weight += candidate.weight_grams
        stops += more_stops
    return chosen


def _planned(strategy: Strategy, members: Sequence[Candidate], bins: Mapping[str, Bin],
             *, zone: str | None = None) -> PlannedList | None:
    totes = {c.fulfilment_order: tote for tote, c in enumerate(members, start=1)}
    stops = build_stops(members, bins, totes, zone=zone)
    if not stops:
        return None
    on_list = {a.fulfilment_order for stop in stops for a in stop.allocations}
    weights = {(c.fulfilment_order, line.line_id): line.unit_weight_grams
               for c in members for line in c.lines}
    return PlannedList(
        strategy, zone or "",
        tuple(c.fulfilment_order for c in members if c.fulfilment_order in on_list),
        stops, sum(s.quantity for s in stops),
        sum(a.quantity * weights[(a.fulfilment_order, a.line_id)]
            for s in stops for a in s.allocations))


def plan_single_order(candidates: Sequence[Candidate], bins: Mapping[str, Bin],
                      limits: Limits, window: Window) -> list[PlannedList]:
    chosen = _fill(candidates, Limits(1, limits.max_units, limits.max_weight_grams))
    planned = _planned(Strategy.SINGLE_ORDER, chosen, bins)
    return [planned] if planned else []


def plan_batch(candidates: Sequence[Candidate], bins: Mapping[str, Bin],
               limits: Limits, window: Window) -> list[PlannedList]:
    planned = _planned(Strategy.BATCH, _fill(candidates, limits), bins)
    return [planned] if planned else []


def plan_zone(candidates: Sequence[Candidate], bins: Mapping[str, Bin],
              limits: Limits, window: Window) -> list[PlannedList]:
    """The orders a batch would take, split into one list per zone of their bins (each
    order keeps its tote number in every zone, so the pack bench collates them), the zones
    in the order the walk reaches them."""
    chosen = _fill(candidates, limits)
    first: dict[str, tuple[int, int, int, int, str]] = {}
    for candidate in chosen:
        for line in candidate.lines:
            zone, key = zone_of(line.bin_code, bins), walk_key(line.bin_code, bins)
            first[zone] = min(first.get(zone, key), key)
    lists = (_planned(Strategy.ZONE, chosen, bins, zone=zone)
             for zone in sorted(first, key=lambda z: (first[z], z)))
    return [planned for planned in lists if planned is not None]


def plan_wave(candidates: Sequence[Candidate], bins: Mapping[str, Bin],
              limits: Limits, window: Window) -> list[PlannedList]:
    """Every order due in the window, across all zones, in one walk. A wave is a cart train
    released together, not one picker's tote cart: it is bounded by the number of orders
    and stops, not by one picker's units and weight."""
    due = [c for c in candidates
           if c.promised_ship_time <= window.due_before
           and (window.due_after is None or c.promised_ship_time >= window.due_after)]
    planned = _planned(Strategy.WAVE, _fill(due, limits, carry_bounds=False), bins)
    return [planned] if planned else []


@dataclass(frozen=True)
class Window:
    """The wave's time window over promised ship times."""

    due_before: datetime
    due_after: datetime | None = None


Planner = Callable[[Sequence[Candidate], Mapping[str, Bin], Limits, Window], list[PlannedList]]

PLANNERS: dict[Strategy, Planner] = {
    Strategy.SINGLE_ORDER: plan_single_order,
    Strategy.BATCH: plan_batch,
    Strategy.ZONE: plan_zone,
    Strategy.WAVE: plan_wave,
}


def plan(strategy: Strategy, candidates: Sequence[Candidate], bins: Iterable[Bin],
         limits: Limits, window: Window) -> list[PlannedList]:
    return PLANNERS[strategy](candidates, {b.bin_code: b for b in bins}, limits, window)


@dataclass(frozen=True)
class StopOutcome:
    """What one allocation of a confirmed stop got."""

    allocation: Allocation
    picked: int
    short: int


def confirm_stop(stop: Stop, picked: int) -> list[StopOutcome]:
    """The units picked go to the stop's most urgent orders first: the shortfall falls on
    the orders that can best wait."""
    outcomes = []
    left = picked
    for allocation in stop.allocations:
        taken = min(left, allocation.quantity)
        left -= taken
        outcomes.append(StopOutcome(allocation, taken, allocation.quantity - taken))
    return outcomes
