"""The allocation planner and its strategies, without a server."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from oms_inventory.allocation.domain import (
    STRATEGIES,
    Destination,
    Line,
    Money,
    Node,
    Plan,
    Policy,
    ProductRule,
    Reason,
    plan,
    rank,
    serves,
)
from oms_platform.values import LatLng

LOS_ANGELES = Destination(LatLng(34.0522, -118.2437), "US", "CA")
NEW_YORK = Destination(LatLng(40.7128, -74.0060), "US", "NY")
WEST = Node("west", LatLng(39.5296, -119.8138), priority=5, cost=Money(Decimal("7.50"), "USD"))
EAST = Node("east", LatLng(40.5187, -74.4121), priority=1, cost=Money(Decimal("4.00"), "USD"))
MIDDLE = Node("middle", LatLng(39.0997, -94.5786), priority=3,
              cost=Money(Decimal("5.00"), "USD"))
ALL = [WEST, EAST, MIDDLE]
PRODUCTS = {sku: ProductRule(sku) for sku in ("MUG", "TEA", "CUP")}


def run(lines: list[Line], stock: dict[tuple[str, str], int], *,
        destination: Destination = LOS_ANGELES, products: dict[str, ProductRule] | None = None,
        waiting: dict[str, int] | None = None, strategy: str = "nearest",
        nodes: list[Node] | None = None) -> Plan:
    return plan(lines, products=products or PRODUCTS, nodes=nodes or ALL, available=stock,
                waiting={} if waiting is None else waiting, destination=destination,
                strategy=STRATEGIES[strategy])


def shipments(result: Plan) -> dict[str, list[tuple[str, str, int]]]:
    return {node: [(ln.line_id, ln.sku, ln.quantity) for ln in lines]
            for node, lines in result.shipments.items()}


def test_nearest_node_with_everything_ships_the_whole_order() -> None:
    stock = {("west", "MUG"): 5, ("east", "MUG"): 5}
    result = run([Line("1", "MUG", 2)], stock)
    assert shipments(result) == {"west": [("1", "MUG", 2)]}
    assert stock == {("west", "MUG"): 3, ("east", "MUG"): 5}
    assert shipments(run([Line("1", "MUG", 1)], stock, destination=NEW_YORK)) == {
        "east": [("1", "MUG", 1)]}


def test_the_west_coast_goes_east_when_west_lacks_a_line() -> None:
    stock = {("west", "MUG"): 5, ("west", "TEA"): 1, ("east", "MUG"): 5, ("east", "TEA"): 5}
    result = run([Line("1", "MUG", 1), Line("2", "TEA", 2)], stock)
    assert shipments(result) == {"east": [("1", "MUG", 1), ("2", "TEA", 2)]}
    assert not result.backordered and not result.rejected


def test_split_only_when_no_node_has_it_all_with_the_fewest_nodes() -> None:
    stock = {("west", "MUG"): 3, ("east", "TEA"): 2, ("middle", "MUG"): 1,
             ("middle", "TEA"): 1}
    result = run([Line("1", "MUG", 3), Line("2", "TEA", 2)], stock)
    assert shipments(result) == {"west": [("1", "MUG", 3)], "east": [("2", "TEA", 2)]}


def test_one_line_can_be_split_across_nodes() -> None:
    stock = {("west", "MUG"): 2, ("east", "MUG"): 3}
    result = run([Line("1", "MUG", 4)], stock)
    assert shipments(result) == {"east": [("1", "MUG", 3)], "west": [("1", "MUG", 1)]}
    assert stock == {("west", "MUG"): 1, ("east", "MUG"): 0}


def test_unknown_sku_is_rejected_and_the_rest_allocated() -> None:
    result = run([Line("1", "MUG", 1), Line("2", "NOPE", 1)], {("west", "MUG"): 1})
    assert shipments(result) == {"west": [("1", "MUG", 1)]}
    assert [(r.line.line_id, r.reason) for r in result.rejected] == [("2", Reason.UNKNOWN_SKU)]


def test_deny_rejects_the_whole_short_line_and_keeps_its_stock() -> None:
    stock = {("west", "MUG"): 1}
    result = run([Line("1", "MUG", 2)], stock)
    assert result.shipments == {}
    assert [(r.line.quantity, r.reason) for r in result.rejected] == [
        (2, Reason.BACKORDER_NOT_ALLOWED)]
    assert stock == {("west", "MUG"): 1}
    no_node = run([Line("1", "TEA", 1)], stock)
    assert [r.reason for r in no_node.rejected] == [Reason.NO_NODE]


def test_allow_reserves_what_exists_and_backorders_the_rest() -> None:
    products = {"MUG": ProductRule("MUG", Policy.ALLOW)}
    waiting: dict[str, int] = {}
    result = run([Line("1", "MUG", 5)], {("west", "MUG"): 2}, products=products,
                 waiting=waiting)
    assert shipments(result) == {"west": [("1", "MUG", 2)]}
    assert [(ln.line_id, ln.quantity) for ln in result.backordered] == [("1", 3)]
    assert waiting == {"MUG": 3}


def test_allow_up_to_limit_counts_what_already_waits() -> None:
    products = {"MUG": ProductRule("MUG", Policy.ALLOW_UP_TO_LIMIT, backorder_limit=5)}
    waiting = {"MUG": 3}
    within = run([Line("1", "MUG", 2)], {}, products=products, waiting=waiting)
    assert [ln.quantity for ln in within.backordered] == [2]
    beyond = run([Line("1", "MUG", 1)], {}, products=products, waiting=waiting)
    assert [r.reason for r in beyond.rejected] == [Reason.BACKORDER_LIMIT_REACHED]
    assert waiting == {"MUG": 5}


def test_nodes_that_do_not_serve_the_region_are_not_candidates() -> None:
    west_ca_only = Node("west", WEST.location, regions=("US-CA",))
    east_nj_only = Node("east", EAST.location, regions=("US-NJ", "CA"))
    assert serves(west_ca_only, LOS_ANGELES) and not serves(west_ca_only, NEW_YORK)
    assert serves(Node("any", EAST.location), Destination(None, "FR"))
    stock = {("west", "MUG"): 5, ("east", "MUG"): 5}
    result = run([Line("1", "MUG", 1)], stock, destination=NEW_YORK,
                 nodes=[west_ca_only, east_nj_only])
    assert [r.reason for r in result.rejected] == [Reason.NO_NODE]


@pytest.mark.parametrize(("strategy", "first"), [("nearest", "west"), ("priority", "east"),
                                                 ("lowest_cost", "east")])
def test_strategies_rank_differently(strategy: str, first: str) -> None:
    ranking = rank(ALL, LOS_ANGELES, STRATEGIES[strategy])
    assert (ranking.nodes[0].node_id, ranking.strategy, ranking.note) == (first, strategy, "")


def test_ties_go_by_priority_then_node_id_and_unknown_destination_by_priority() -> None:
    a = Node("a", WEST.location, priority=2)
    b = Node("b", WEST.location, priority=1)
    c = Node("c", WEST.location, priority=1)
    assert [n.node_id for n in rank([a, c, b], LOS_ANGELES, STRATEGIES["nearest"]).nodes] == [
        "b", "c", "a"]
    assert rank(ALL, Destination(None, "US"), STRATEGIES["nearest"]).nodes[0] == EAST


def test_a_batch_planned_in_turn_never_takes_more_than_exists() -> None:
    stock = {("west", "MUG"): 3}
    waiting: dict[str, int] = {}
    products = {"MUG": ProductRule("MUG", Policy.ALLOW)}
    plans = [run([Line("1", "MUG", 1)], stock, products=products, waiting=waiting)
             for _ in range(5)]
    assert sum(p.reserved_units.get(("west", "MUG"), 0) for p in plans) == 3
    assert sum(len(p.backordered) for p in plans) == 2
    assert stock[("west", "MUG")] == 0


def costing(node: Node, amount: str | None, currency: str = "USD") -> Node:
    return replace(node, cost=None if amount is None else Money(Decimal(amount), currency))


def test_a_node_without_a_cost_ranks_after_every_known_cost_never_as_free() -> None:
    nodes = [costing(EAST, None), costing(WEST, "7.50"), costing(MIDDLE, "5.00"),
             costing(Node("far", LatLng(51.5, -0.12)), None)]
    ranking = rank(nodes, LOS_ANGELES, STRATEGIES["lowest_cost"])
    # Known costs cheapest first; the unknown ones after them, nearest first.
    assert [n.node_id for n in ranking.nodes] == ["middle", "west", "east", "far"]
    assert ranking.strategy == "lowest_cost"
    # A zero cost is a known cost: free beats everything.
    free = rank([costing(WEST, "0"), costing(EAST, None)], NEW_YORK, STRATEGIES["lowest_cost"])
    assert [n.node_id for n in free.nodes] == ["west", "east"]


def test_costs_in_different_currencies_are_not_compared() -> None:
    nodes = [costing(WEST, "7.50", "USD"), costing(EAST, "4.00", "EUR"),
             costing(MIDDLE, None)]
    ranking = rank(nodes, LOS_ANGELES, STRATEGIES["lowest_cost"])
    # Ranked by the next rule instead: distance (then priority, node id), as nearest does.
    assert [n.node_id for n in ranking.nodes] == ["west", "middle", "east"]
    assert ranking.strategy == "nearest"
    assert "EUR, USD" in ranking.note
    # Amounts compare as decimals, whatever their scale.
    same = rank([costing(WEST, "10"), costing(EAST, "9.999999")], LOS_ANGELES,
                STRATEGIES["lowest_cost"])
    assert [n.node_id for n in same.nodes] == ["east", "west"]


def test_the_plan_says_when_lowest_cost_could_not_compare() -> None:
    nodes = [costing(WEST, "7.50", "USD"), costing(EAST, "4.00", "EUR")]
    stock = {("west", "MUG"): 5, ("east", "MUG"): 5}
    result = run([Line("1", "MUG", 1)], dict(stock), nodes=nodes, strategy="lowest_cost")
    assert shipments(result) == {"west": [("1", "MUG", 1)]}
    assert result.strategy == "nearest" and "EUR, USD" in result.notes[0]

    # Only the nodes holding some of the order count: a node in another currency with
    # nothing to give does not stop the comparison.
    stock = {("west", "MUG"): 5, ("east", "TEA"): 5, ("middle", "MUG"): 5}
    result = run([Line("1", "MUG", 1)], stock, nodes=[*nodes, MIDDLE], strategy="lowest_cost")
    assert shipments(result) == {"middle": [("1", "MUG", 1)]}
    assert (result.strategy, result.notes) == ("lowest_cost", [])
