"""Which nodes ship an order, what waits for stock and what is refused; where an address
without coordinates lies; what a valid preview is. Plain Python: the storage layer reads (and
locks) the stock, this module decides, the storage layer writes.

The rules, in order:

1. A line whose SKU is unknown (or deleted) is rejected (UNKNOWN_SKU).
2. Candidates are the nodes that serve the destination's region (no regions = everywhere).
3. Per SKU, lines take from what the candidates hold together, in line order. A line that
   finds too little is split into what exists and a shortfall; the shortfall waits in the
   backorder queue if the SKU's policy allows it (ALLOW; ALLOW_UP_TO_LIMIT while the units
   waiting for the SKU stay within its limit), otherwise the whole line is rejected and keeps
   nothing (NO_NODE when no candidate stocks the SKU at all, else BACKORDER_NOT_ALLOWED or
   BACKORDER_LIMIT_REACHED).
4. What is kept ships from the single node best by the strategy that holds all of it; else
   from the fewest nodes, chosen greedily (set cover): each step takes the node that
   completes the most SKUs, then covers the most units, then is best by the strategy. Greedy
   set cover is not always minimal, but it is within a small factor of it and deterministic.

Strategies rank the candidates that hold some of the order's stock: ``nearest`` (great-circle
distance to the kilometre, then priority, then node id), ``priority`` (priority, then
distance, then id), ``lowest_cost`` (shipment cost, then distance, priority, id). Without a
known destination, distance counts as zero. ``lowest_cost`` compares costs only in one
currency (there is no exchange rate to convert with, and a rate of the day would make routing
change by itself): when the candidates price in several, it ranks as ``nearest`` does, and the
plan says so. A node without a cost is ranked after every node with one, never as free.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from oms_platform.errors import Violations
from oms_platform.values import LatLng, haversine_km

from oms_inventory.catalogue.domain import (
    MAX_REQUEST_ID_LENGTH,
    check_address_lines,
    check_location,
    check_sku,
)

MAX_PREVIEW_LINES = 500


@dataclass(frozen=True)
class Line:
    line_id: str
    sku: str
    quantity: int


class Policy(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    ALLOW_UP_TO_LIMIT = "ALLOW_UP_TO_LIMIT"


class Reason(StrEnum):
    """Why a line is refused; the names of AllocationFailureReason without their prefix."""

    UNKNOWN_SKU = "UNKNOWN_SKU"
    BACKORDER_NOT_ALLOWED = "BACKORDER_NOT_ALLOWED"
    BACKORDER_LIMIT_REACHED = "BACKORDER_LIMIT_REACHED"
    NO_NODE = "NO_NODE"


@dataclass(frozen=True)
class ProductRule:
    """What the planner needs of a product."""

    sku: str
    policy: Policy = Policy.DENY
    backorder_limit: int = 0


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Node:
    node_id: str
    location: LatLng
    priority: int = 0
    # What one shipment from the node costs; None when nobody said.
    cost: Money | None = None
    # Region codes ("US", "US-CA") the node ships to; empty means everywhere.
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Destination:
    location: LatLng | None = None
    region_code: str = ""
    administrative_area: str = ""


@dataclass(frozen=True)
class Rejected:
    line: Line
    reason: Reason
    message: str


@dataclass
class Plan:
    """Per node, the (line, units) reserved there; the units that wait; the refused lines;
    the strategy that ranked the nodes (not the one asked for, when that one could not) and
    why, if so."""

    shipments: dict[str, list[Line]] = field(default_factory=dict)
    backordered: list[Line] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    strategy: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def reserved_units(self) -> dict[tuple[str, str], int]:
        """Units taken per (node_id, sku)."""
        taken: dict[tuple[str, str], int] = {}
        for node_id, lines in self.shipments.items():
            for line in lines:
                taken[node_id, line.sku] = taken.get((node_id, line.sku), 0) + line.quantity
        return taken


@dataclass(frozen=True)
class Ranking:
    """Nodes best first, by the strategy named (another than asked for when the asked one
    could not rank them), and the reason when so."""

    nodes: list[Node]
    strategy: str
    note: str = ""


Strategy = Callable[[Sequence[Node], Destination], Ranking]


def _distance(node: Node, destination: Destination) -> int:
    if destination.location is None:
        return 0
    return round(haversine_km(node.location, destination.location))


def nearest(nodes: Sequence[Node], destination: Destination) -> Ranking:
    return Ranking(sorted(nodes, key=lambda n: (_distance(n, destination), n.priority,
                                                n.node_id)), "nearest")


def priority_order(nodes: Sequence[Node], destination: Destination) -> Ranking:
    return Ranking(sorted(nodes, key=lambda n: (n.priority, _distance(n, destination),
                                                n.node_id)), "priority")


def lowest_cost(nodes: Sequence[Node], destination: Destination) -> Ranking:
    currencies = sorted({n.cost.currency for n in nodes if n.cost is not None})
    if len(currencies) > 1:
        fallback = nearest(nodes, destination)
        return Ranking(fallback.nodes, fallback.strategy,
                       f"lowest_cost: shipment costs in {', '.join(currencies)} cannot be "
                       f"compared; ranked by {fallback.strategy} instead")

    def key(node: Node) -> tuple[bool, Decimal, int, int, str]:
        unknown = node.cost is None
        amount = Decimal(0) if node.cost is None else node.cost.amount
        return unknown, amount, _distance(node, destination), node.priority, node.node_id

    return Ranking(sorted(nodes, key=key), "lowest_cost")


STRATEGIES: dict[str, Strategy] = {
    "nearest": nearest,
    "priority": priority_order,
    "lowest_cost": lowest_cost,
}


def serves(node: Node, destination: Destination) -> bool:
    if not node.regions:
        return True
    region = destination.region_code.strip().upper()
    area = destination.administrative_area.strip().upper()
    codes = {region, f"{region}-{area}"} if area else {region}
    return any(code.upper() in codes for code in node.regions)


def rank(nodes: Iterable[Node], destination: Destination, strategy: Strategy) -> Ranking:
    """The nodes that serve the destination, best first."""
    return strategy([n for n in nodes if serves(n, destination)], destination)


def plan(
    lines: Sequence[Line],
    *,
    products: Mapping[str, ProductRule],
    nodes: Sequence[Node],
    available: MutableMapping[tuple[str, str], int],
    waiting: MutableMapping[str, int],
    destination: Destination,
    strategy: Strategy = nearest,
) -> Plan:
    """Plans one order. ``available`` (units per (node_id, sku)) and ``waiting`` (units
    backordered per SKU) are updated with what the plan takes, so that a batch of orders is
    planned one after the other against the same stock."""
    result = Plan()
    wanted = {line.sku for line in lines}
    serving = {n.node_id for n in nodes if serves(n, destination)}
    pool: dict[str, int] = {}
    stocked: set[str] = set()
    holding: set[str] = set()
    for (node_id, sku), units in available.items():
        if node_id in serving and sku in wanted:
            stocked.add(sku)
            pool[sku] = pool.get(sku, 0) + max(units, 0)
            if units > 0:
                holding.add(node_id)
    # Only the nodes that can ship something of the order are ranked, so that a node with
    # nothing to give changes nothing (for lowest_cost: not even which currencies compete).
    ranking = rank([n for n in nodes if n.node_id in holding], destination, strategy)
    ranked = ranking.nodes
    result.strategy = ranking.strategy
    if ranking.note:
        result.notes.append(ranking.note)

    kept: list[Line] = []
    for line in lines:
        rule = products.get(line.sku)
        if rule is None:
            result.rejected.append(Rejected(line, Reason.UNKNOWN_SKU,
                                            f"no product has SKU {line.sku}"))
            continue
        have = pool.get(line.sku, 0)
        take = min(have, line.quantity)
        shortfall = line.quantity - take
        if shortfall:
            refusal = _refusal(rule, line, shortfall, waiting.get(line.sku, 0),
                               stocked=line.sku in stocked)
            if refusal is not None:
                result.rejected.append(refusal)
                continue
            waiting[line.sku] = waiting.get(line.sku, 0) + shortfall
            result.backordered.append(Line(line.line_id, line.sku, shortfall))
        pool[line.sku] = have - take
        if take:
            kept.append(Line(line.line_id, line.sku, take))

    if kept:
        result.shipments = _route(kept, ranked, available)
    return result


def _refusal(rule: ProductRule, line: Line, shortfall: int, waiting: int, *,
             stocked: bool) -> Rejected | None:
    if rule.policy is Policy.ALLOW:
        return None
    if rule.policy is Policy.ALLOW_UP_TO_LIMIT:
        if waiting + shortfall <= rule.backorder_limit:
            return None
        return Rejected(line, Reason.BACKORDER_LIMIT_REACHED,
                        f"{shortfall} more units of {line.sku} would exceed its backorder "
                        f"limit of {rule.backorder_limit} ({waiting} waiting)")
    if not stocked:
        return Rejected(line, Reason.NO_NODE,
                        f"no node serving the destination stocks {line.sku}")
    return Rejected(line, Reason.BACKORDER_NOT_ALLOWED,
                    f"{shortfall} of {line.quantity} units of {line.sku} are not in stock "
                    "and the product may not be backordered")


def _route(kept: Sequence[Line], ranked: Sequence[Node],
           available: MutableMapping[tuple[str, str], int]) -> dict[str, list[Line]]:
    need: dict[str, int] = {}
    for line in kept:
        need[line.sku] = need.get(line.sku, 0) + line.quantity

    def holds(node: Node, sku: str) -> int:
        return max(available.get((node.node_id, sku), 0), 0)

    whole = next((n for n in ranked if all(holds(n, s) >= q for s, q in need.items())), None)
    # Per SKU, the (node, units) it is taken from, in the order nodes were chosen.
    sources: dict[str, list[tuple[str, int]]] = {sku: [] for sku in need}
    if whole is not None:
        for sku, units in need.items():
            sources[sku].append((whole.node_id, units))
    else:
        remaining = dict(need)
        candidates = list(ranked)
        while any(remaining.values()) and candidates:
            def gain(node: Node) -> tuple[int, int]:
                completes = sum(1 for s, q in remaining.items() if q and holds(node, s) >= q)
                units = sum(min(holds(node, s), q) for s, q in remaining.items())
                return completes, units

            best = max(candidates, key=gain)  # max keeps the first (best ranked) on ties
            if gain(best)[1] == 0:
                break
            candidates.remove(best)
            for sku, units in remaining.items():
                taken = min(holds(best, sku), units)
                if taken:
                    sources[sku].append((best.node_id, taken))
                    remaining[sku] = units - taken
    for sku, parts in sources.items():
        for node_id, units in parts:
            available[node_id, sku] = available.get((node_id, sku), 0) - units

    shipments: dict[str, list[Line]] = {}
    cursor = {sku: list(parts) for sku, parts in sources.items()}
    for line in kept:
        left = line.quantity
        parts = cursor[line.sku]
        while left:
            node_id, units = parts[0]
            taken = min(units, left)
            shipments.setdefault(node_id, []).append(Line(line.line_id, line.sku, taken))
            left -= taken
            if taken == units:
                parts.pop(0)
            else:
                parts[0] = (node_id, units - taken)
    return shipments


@dataclass(frozen=True)
class Held:
    """Units of an order line reserved at a node."""

    order: str
    line_id: str
    node_id: str
    sku: str
    quantity: int


@dataclass
class OrderRequest:
    """An order (or the part of one) to allocate."""

    order: str
    lines: list[Line]
    destination: Destination
    priority: bool = False
    capture_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    expire_time: datetime | None = None


@dataclass(frozen=True)
class ShortPick:
    """What a short pick does at its node: on-hand and reserved drop, and the line's units
    to allocate again elsewhere."""

    on_hand_drop: int
    reserved_drop: int
    reallocate: int


def short_pick(*, shortfall: int, on_hand: int, reserved: int, line_reserved: int) -> ShortPick:
    """The units a picker did not find are gone from the node. The shorted line's reservation
    shrinks by the shortfall (as far as it holds units here), and what it loses is allocated
    again. On-hand drops by the shortfall, but never below what other lines still hold: the
    picker counted one bin, not the node, and the count task settles the rest."""
    shortfall = max(shortfall, 0)
    reserved_drop = min(shortfall, max(line_reserved, 0), max(reserved, 0))
    on_hand_drop = min(shortfall, max(on_hand - (reserved - reserved_drop), 0))
    return ShortPick(on_hand_drop, reserved_drop, reserved_drop)


def short_pick_key(pick_list: str, order: str, line_id: str, bin_code: str) -> str:
    """The ledger request id of a short pick: a picker shorts a line at a bin once per pick
    list, so a copy of the event under another id finds it and changes nothing. Hashed when
    the names would not fit the column."""
    key = f"short:{pick_list}:{order}:{line_id}:{bin_code}"
    if len(key) <= MAX_REQUEST_ID_LENGTH:
        return key
    return "short:" + hashlib.sha256(key.encode()).hexdigest()


def shipment_key(package: str, order: str, line_id: str) -> str:
    """The ledger request id of a shipment: a line leaves in a package once, so a copy of
    `PackageShipped` under another id finds it and changes nothing. Hashed when the names
    would not fit the column, as fulfilment's package and order names (two UUIDs and one)
    do not; a key that fits is kept as it is, as it was always written."""
    key = f"ship:{package}:{order}:{line_id}"
    if len(key) <= MAX_REQUEST_ID_LENGTH:
        return key
    return "ship:" + hashlib.sha256(key.encode()).hexdigest()


def check_preview(violations: Violations, *, address_lines: Sequence[str] | None,
                  location: LatLng | None, region_code: str, lines: Sequence[Line],
                  strategy_known: bool) -> None:
    """A preview's fields; `address_lines` None without an address."""
    if violations.require(address_lines is not None, "shipping_address", "required"):
        check_address_lines(violations, "shipping_address.address_lines", address_lines or ())
        if location is not None:
            check_location(violations, "shipping_address.location", location)
        else:
            violations.require(bool(region_code.strip()), "shipping_address.region_code",
                               "required when the address has no location")
    if violations.require(bool(lines), "lines", "at least one line is required"):
        violations.require(len(lines) <= MAX_PREVIEW_LINES, "lines",
                           f"at most {MAX_PREVIEW_LINES} lines")
    seen: set[str] = set()
    for i, line in enumerate(lines[:MAX_PREVIEW_LINES]):
        if violations.require(bool(line.line_id), f"lines[{i}].line_id", "required"):
            violations.require(line.line_id not in seen, f"lines[{i}].line_id",
                               "must be unique within the order")
            seen.add(line.line_id)
        check_sku(violations, f"lines[{i}].sku", line.sku)
        violations.require(line.quantity > 0, f"lines[{i}].quantity", "must be positive")
    violations.require(strategy_known, "strategy", "unknown strategy")


# --- Where an order goes when its address carries no coordinates ---
# A small built-in table, good enough to choose between warehouses hundreds of kilometres
# apart: US states by their geographic centre, countries by a point near where most of their
# people live (the geographic centre of Canada or Australia would route to empty land).

US_STATES: dict[str, tuple[float, float]] = {
    "AL": (32.81, -86.79), "AK": (61.37, -152.40), "AZ": (34.27, -111.66),
    "AR": (34.89, -92.44), "CA": (37.18, -119.47), "CO": (39.00, -105.55),
    "CT": (41.62, -72.73), "DE": (38.99, -75.51), "DC": (38.90, -77.03),
    "FL": (28.63, -82.45), "GA": (32.64, -83.44), "HI": (20.29, -156.37),
    "ID": (44.35, -114.61), "IL": (40.04, -89.20), "IN": (39.89, -86.28),
    "IA": (42.08, -93.50), "KS": (38.49, -98.38), "KY": (37.53, -85.30),
    "LA": (31.07, -91.99), "ME": (45.37, -69.24), "MD": (39.06, -76.80),
    "MA": (42.26, -71.81), "MI": (44.35, -85.41), "MN": (46.28, -94.31),
    "MS": (32.74, -89.67), "MO": (38.46, -92.46), "MT": (47.05, -109.63),
    "NE": (41.54, -99.80), "NV": (39.33, -116.63), "NH": (43.68, -71.58),
    "NJ": (40.19, -74.67), "NM": (34.41, -106.11), "NY": (42.95, -75.53),
    "NC": (35.56, -79.39), "ND": (47.45, -100.47), "OH": (40.29, -82.79),
    "OK": (35.59, -97.49), "OR": (43.93, -120.56), "PA": (40.88, -77.80),
    "RI": (41.68, -71.56), "SC": (33.92, -80.90), "SD": (44.44, -100.23),
    "TN": (35.86, -86.35), "TX": (31.48, -99.33), "UT": (39.31, -111.67),
    "VT": (44.07, -72.67), "VA": (37.52, -78.85), "WA": (47.38, -120.45),
    "WV": (38.64, -80.62), "WI": (44.62, -89.99), "WY": (43.00, -107.55),
    "PR": (18.22, -66.59),
}

COUNTRIES: dict[str, tuple[float, float]] = {
    "US": (37.42, -92.14), "CA": (45.50, -76.00), "MX": (20.50, -100.50),
    "BR": (-18.00, -46.00), "AR": (-34.00, -61.00), "GB": (52.50, -1.50),
    "IE": (53.30, -7.70), "FR": (46.60, 2.40), "DE": (51.10, 10.40),
    "NL": (52.20, 5.30), "BE": (50.60, 4.60), "LU": (49.70, 6.10),
    "ES": (40.20, -3.60), "PT": (39.60, -8.00), "IT": (42.80, 12.50),
    "CH": (46.80, 8.20), "AT": (47.60, 14.10), "DK": (55.90, 10.40),
    "SE": (59.30, 16.00), "NO": (60.50, 9.00), "FI": (61.50, 25.00),
    "PL": (52.10, 19.40), "CZ": (49.80, 15.50), "JP": (35.70, 138.00),
    "KR": (36.50, 127.80), "CN": (32.00, 112.00), "IN": (22.00, 79.00),
    "SG": (1.35, 103.82), "AU": (-33.50, 147.00), "NZ": (-39.50, 175.00),
    "ZA": (-27.50, 27.00), "AE": (24.50, 54.70),
}


def centroid(region_code: str, administrative_area: str) -> LatLng | None:
    """A representative point of the state (US) or else the country, if known."""
    region = region_code.strip().upper()
    area = administrative_area.strip().upper()
    point = (US_STATES.get(area) if region == "US" else None) or COUNTRIES.get(region)
    return LatLng(*point) if point else None
