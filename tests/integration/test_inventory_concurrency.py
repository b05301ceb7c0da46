"""No oversell under concurrency, on real PostgreSQL: many buyers for one hot SKU, and a
random mix of receipts, orders, cancellations and shipments across SKUs and nodes after which
every level adds up and the ledger recomputes it."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict

from inventory_kit import (
    EDISON,
    LOS_ANGELES,
    NEW_YORK,
    Outcomes,
    Stub,
    database_url,
    inventory_settings,
    js,
    level,
    order_created,
    outcomes,
    quiet,
    receive,
    service,
    settled,
    stub,
)
from nats.js import JetStreamContext
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms_devtools.testkit import RENO, add_node, add_sku, address, eventually, publish
from oms_inventory.tables import backorders, reservations, stock_ledger, stock_levels
from oms_platform.service import Service
from sqlalchemy import func, select

__all__ = ["database_url", "inventory_settings", "js", "outcomes", "service", "stub"]

KANSAS_CITY = (39.0997, -94.5786)


async def test_a_thousand_buyers_for_a_hundred_units_reserve_exactly_a_hundred(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes, service: Service,
) -> None:
    node = await add_node(stub, RENO)
    sku = await add_sku(stub, {node: 100})
    orders = [order_created([(sku, 1)]) for _ in range(1000)]
    slots = asyncio.Semaphore(100)

    async def buy(event: order_events.OrderCreated) -> None:
        async with slots:
            await publish(js, event)

    await asyncio.gather(*(buy(event) for event in orders))
    await outcomes.wait_for([e.order for e in orders], timeout=180)
    await quiet(js, outcomes)

    allocated = [e.order for e in orders if outcomes.of(e.order, events_pb2.StockAllocated)]
    refused = [e.order for e in orders if outcomes.of(e.order, events_pb2.AllocationFailed)]
    assert len(allocated) == 100
    assert len(refused) == 900
    assert not set(allocated) & set(refused)
    assert await level(stub, node, sku) == (100, 100)
    assert service.runtime is not None
    async with service.runtime.engine.connect() as conn:
        held = (await conn.execute(
            select(reservations.c.order_name, reservations.c.quantity)
            .where(reservations.c.sku == sku))).all()
    assert sorted(name for name, _ in held) == sorted(allocated)
    assert all(quantity == 1 for _, quantity in held)


async def test_random_traffic_keeps_every_level_consistent_with_the_ledger(
    stub: Stub, js: JetStreamContext, outcomes: Outcomes, service: Service,
) -> None:
    rng = random.Random(20261125)
    nodes = [await add_node(stub, where) for where in (RENO, EDISON, KANSAS_CITY)]
    skus = [await add_sku(stub, {n: rng.randint(1, 6) for n in nodes},
                          backorder_policy=inventory_pb2.BACKORDER_POLICY_ALLOW) for _ in range(6)]
    received: Counter[str] = Counter()
    for node in nodes:
        for sku in skus:
            received[sku] += (await level(stub, node, sku))[0]
    shipped: Counter[str] = Counter()
    placed: list[order_events.OrderCreated] = []

    async def buyer() -> None:
        for _ in range(12):
            lines = [(sku, rng.randint(1, 3)) for sku in rng.sample(skus, rng.randint(1, 3))]
            event = order_created(lines, address(rng.choice((LOS_ANGELES, NEW_YORK))),
                                  priority=rng.random() < 0.2)
            placed.append(event)
            await publish(js, event)
            await asyncio.sleep(rng.random() * 0.02)

    async def receiver() -> None:
        for _ in range(15):
            sku, node = rng.choice(skus), rng.choice(nodes)
            units = rng.randint(1, 5)
            await receive(stub, node, sku, units)
            received[sku] += units
            await asyncio.sleep(rng.random() * 0.05)

    async def canceller() -> None:
        for _ in range(10):
            await asyncio.sleep(0.03)
            if not placed:
                continue
            event = rng.choice(placed)
            line = rng.choice(event.lines)
            cancel = (order_events.OrderCancelled(order=event.order, whole_order=True)
                      if rng.random() < 0.5 else order_events.OrderCancelled(
                          order=event.order, lines=[order_events.CancelledLine(
                              line_id=line.line_id, sku=line.sku, quantity=1)]))
            if cancel.whole_order:
                whole.add(event.order)
            await publish(js, cancel)

    whole: set[str] = set()
    await asyncio.gather(*(buyer() for _ in range(4)), receiver(), receiver(), canceller())
    # An order cancelled as a whole may be cancelled before it is allocated: then it has no
    # outcome at all.
    await outcomes.wait_for([e.order for e in placed if e.order not in whole], timeout=120)
    await settled(js)
    # A receipt racing a batch can leave a line waiting beside stock for the background sweep
    # (see allocation.sweep_backorders): that is its job to finish before the books are read.
    await nothing_waits_beside_stock(service, skus)

    # Ship part of what is reserved, some packages twice.
    assert service.runtime is not None
    async with service.runtime.engine.connect() as conn:
        held = (await conn.execute(select(reservations))).all()
    packages = []
    for row in rng.sample(held, min(len(held), 15)):
        quantity = rng.randint(1, row.quantity)
        packages.append(fulfilment_events.PackageShipped(
            package=f"packages/{uuid.uuid4().hex}", node_id=row.node_id,
            lines=[fulfilment_events.ShippedLine(order=row.order_name, line_id=row.line_id,
                                                 sku=row.sku, quantity=quantity)]))
        shipped[row.sku] += quantity
    for package in packages + rng.sample(packages, len(packages) // 2):
        await publish(js, package, aggregate_id=package.package,
                      partition=package.node_id)
    await settled(js)
    await nothing_waits_beside_stock(service, skus)

    # One snapshot for every figure, so a sweep committing meanwhile cannot tear them apart.
    async with service.runtime.engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        await conn.begin()
        levels = {(r.node_id, r.sku): r for r in (await conn.execute(
            select(stock_levels).where(stock_levels.c.sku.in_(skus)))).all()}
        ledger = {(r.node_id, r.sku): (r.on_hand, r.reserved) for r in (await conn.execute(
            select(stock_ledger.c.node_id, stock_ledger.c.sku,
                   func.sum(stock_ledger.c.on_hand_delta).label("on_hand"),
                   func.sum(stock_ledger.c.reserved_delta).label("reserved"))
            .where(stock_ledger.c.sku.in_(skus))
            .group_by(stock_ledger.c.node_id, stock_ledger.c.sku))).all()}
        held_per_level: Counter[tuple[str, str]] = Counter()
        for r in (await conn.execute(select(reservations).where(
                reservations.c.sku.in_(skus)))).all():
            held_per_level[r.node_id, r.sku] += r.quantity
        waiting = dict((await conn.execute(
            select(backorders.c.sku, func.sum(backorders.c.quantity))
            .where(backorders.c.sku.in_(skus)).group_by(backorders.c.sku))).all())

    per_sku: dict[str, Counter[str]] = defaultdict(Counter)
    for (node, sku), row in levels.items():
        available = row.on_hand - row.reserved - row.safety_stock
        assert available >= 0
        assert row.reserved == held_per_level[node, sku], (node, sku)
        assert ledger[node, sku] == (row.on_hand, row.reserved), (node, sku)
        per_sku[sku].update(on_hand=row.on_hand, reserved=row.reserved, available=available)
    for sku in skus:
        totals = per_sku[sku]
        # Every unit received is still available, reserved, or consumed by a shipment.
        assert received[sku] == totals["available"] + totals["reserved"] + shipped[sku], sku
        assert totals["on_hand"] == totals["available"] + totals["reserved"]
        # Nothing waits while a node could serve it: every node here serves everywhere.
        assert not waiting.get(sku) or totals["available"] == 0, sku


async def nothing_waits_beside_stock(service: Service, skus: list[str],
                                     timeout: float = 30.0) -> None:
    """Waits until no SKU has units waiting while some node has units available."""
    stranded = (
        select(func.count()).select_from(stock_levels)
        .where(stock_levels.c.sku.in_(skus),
               stock_levels.c.on_hand - stock_levels.c.reserved - stock_levels.c.safety_stock > 0,
               select(backorders.c.id).where(backorders.c.sku == stock_levels.c.sku).exists())
    )

    async def count() -> int:
        assert service.runtime is not None
        async with service.runtime.engine.connect() as conn:
            return int(await conn.scalar(stranded) or 0)

    await eventually(count, until=lambda n: n == 0, timeout=timeout,
                     what="no units waiting beside available stock")
