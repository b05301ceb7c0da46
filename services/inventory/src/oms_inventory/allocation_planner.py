"""Which nodes ship an order, what waits for stock and what is refused. Plain Python: the
storage layer reads (and locks) the stock, this module decides, the storage layer writes.

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

from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from oms_platform.values import LatLng, haversine_km

from oms_inventory.domain import Line


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
