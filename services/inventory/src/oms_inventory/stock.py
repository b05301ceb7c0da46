"""Storage of stock movements other than reservations: receipts, counts, safety stock; the
listings of levels and of the ledger; the drift check; channel buffers. Every movement writes
its ledger row in the caller's transaction, next to the level it changes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from oms_platform.filtering import Condition
from sqlalchemy import Row, and_, delete, false, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory import stock_rules
from oms_inventory.catalogue.store import text_condition
from oms_inventory.levels import levels_with_products
from oms_inventory.stock_rules import Drift, Figures
from oms_inventory.tables import (
    channel_buffers,
    fulfilment_nodes,
    products,
    stock_ledger,
    stock_levels,
)

RECEIPT = "RECEIPT"
CYCLE_COUNT = "CYCLE_COUNT"
DRIFT_REPAIR = "DRIFT_REPAIR"

LEVEL_KEY = tuple_(stock_levels.c.node_id, stock_levels.c.sku)
LEVEL_FILTERS = {"sku": stock_levels.c.sku}


async def claim_request(session: AsyncSession, *, node_id: str, sku: str, kind: str,
                        on_hand_delta: int, reference: str | None,
                        request_id: str | None) -> bool:
    """Writes a movement's (first) ledger row; False if its request id was recorded before.
    Concurrent retries of one request wait for each other on the unique index."""
    statement = (
        pg_insert(stock_ledger)
        .values(node_id=node_id, sku=sku, kind=kind, on_hand_delta=on_hand_delta,
                reserved_delta=0, reference=reference, request_id=request_id)
        .on_conflict_do_nothing(index_elements=[stock_ledger.c.request_id])
        .returning(stock_ledger.c.id)
    )
    return (await session.scalar(statement)) is not None


async def movement_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    statement = select(stock_ledger).where(stock_ledger.c.request_id == request_id)
    return (await session.execute(statement)).one_or_none()


async def missing_products(session: AsyncSession, skus: Sequence[str]) -> set[str]:
    """The SKUs with no product (deleted products still exist: stock can arrive for them)."""
    found = await session.scalars(select(products.c.sku).where(products.c.sku.in_(skus)))
    return set(skus) - set(found)


async def node_exists(session: AsyncSession, node_id: str) -> bool:
    statement = select(fulfilment_nodes.c.node_id).where(fulfilment_nodes.c.node_id == node_id)
    return (await session.scalar(statement)) is not None


async def record_receipt(session: AsyncSession, node_id: str, reference: str,
                         lines: Sequence[tuple[str, int]]) -> None:
    """The ledger rows of the lines after the first (which `claim_request` wrote) and the
    levels, each SKU's units added in one upsert."""
    if len(lines) > 1:
        await session.execute(
            stock_ledger.insert(),
            [{"node_id": node_id, "sku": sku, "kind": RECEIPT, "on_hand_delta": quantity,
              "reserved_delta": 0, "reference": reference} for sku, quantity in lines[1:]],
        )
    per_sku: dict[str, int] = {}
    for sku, quantity in lines:
        per_sku[sku] = per_sku.get(sku, 0) + quantity
    statement = pg_insert(stock_levels).values(
        [{"node_id": node_id, "sku": sku, "on_hand": quantity, "reserved": 0}
         for sku, quantity in sorted(per_sku.items())])
    await session.execute(statement.on_conflict_do_update(
        index_elements=[stock_levels.c.node_id, stock_levels.c.sku],
        set_={"on_hand": stock_levels.c.on_hand + statement.excluded.on_hand},
    ))


async def lock_level(session: AsyncSession, node_id: str, sku: str) -> Row[Any]:
    """The level, created empty if it was never stocked, locked until the transaction ends."""
    await session.execute(
        pg_insert(stock_levels)
        .values(node_id=node_id, sku=sku, on_hand=0, reserved=0)
        .on_conflict_do_nothing()
    )
    statement = (
        select(stock_levels.c.on_hand, stock_levels.c.reserved, stock_levels.c.safety_stock)
        .where(stock_levels.c.node_id == node_id, stock_levels.c.sku == sku)
        .with_for_update()
    )
    return (await session.execute(statement)).one()


async def set_on_hand(session: AsyncSession, node_id: str, sku: str, on_hand: int) -> None:
    await session.execute(
        update(stock_levels)
        .where(stock_levels.c.node_id == node_id, stock_levels.c.sku == sku)
        .values(on_hand=on_hand)
    )


async def set_safety_stock(session: AsyncSession, node_id: str, sku: str,
                           safety_stock: int) -> int:
    """Sets the safety stock; returns the one it replaced."""
    previous = (await lock_level(session, node_id, sku)).safety_stock
    await session.execute(
        update(stock_levels)
        .where(stock_levels.c.node_id == node_id, stock_levels.c.sku == sku)
        .values(safety_stock=safety_stock)
    )
    return int(previous)


async def levels(session: AsyncSession, keys: Sequence[tuple[str, str]]) -> list[Row[Any]]:
    statement = (
        select(stock_levels.c.node_id, stock_levels.c.sku, stock_levels.c.on_hand,
               stock_levels.c.reserved, stock_levels.c.safety_stock)
        .where(LEVEL_KEY.in_(sorted(keys)))
        .order_by(stock_levels.c.node_id, stock_levels.c.sku)
    )
    return list((await session.execute(statement)).all())


async def list_levels(session: AsyncSession, *, node_id: str | None,
                      conditions: Sequence[Condition], after: Sequence[str] | None,
                      limit: int) -> Sequence[Row[Any]]:
    """Levels by node then SKU; `conditions` (on `sku`) all hold."""
    statement = (
        select(stock_levels.c.node_id, stock_levels.c.sku, stock_levels.c.on_hand,
               stock_levels.c.reserved, stock_levels.c.safety_stock)
        .order_by(stock_levels.c.node_id, stock_levels.c.sku)
        .limit(limit)
    )
    if node_id is not None:
        statement = statement.where(stock_levels.c.node_id == node_id)
    for condition in conditions:
        statement = statement.where(text_condition(LEVEL_FILTERS[condition.field], condition))
    if after is not None:
        statement = statement.where(LEVEL_KEY > tuple_(literal(after[0]), literal(after[1])))
    return (await session.execute(statement)).all()


async def list_movements(session: AsyncSession, *, node_id: str, sku: str | None,
                         before: int | None, limit: int) -> Sequence[Row[Any]]:
    """Newest first: by id, which grows with every insert."""
    statement = (
        select(stock_ledger)
        .where(stock_ledger.c.node_id == node_id)
        .order_by(stock_ledger.c.id.desc())
        .limit(limit)
    )
    if sku is not None:
        statement = statement.where(stock_ledger.c.sku == sku)
    if before is not None:
        statement = statement.where(stock_ledger.c.id < before)
    return (await session.execute(statement)).all()


def _compared(keys: Sequence[tuple[str, str]] | None) -> Any:
    """Every level next to the sums of its ledger, zero where either side has no row."""
    ledger = select(
        stock_ledger.c.node_id, stock_ledger.c.sku,
        func.sum(stock_ledger.c.on_hand_delta).label("on_hand"),
        func.sum(stock_ledger.c.reserved_delta).label("reserved"),
    ).group_by(stock_ledger.c.node_id, stock_ledger.c.sku)
    levels_query = select(stock_levels)
    if keys is not None:
        ledger = ledger.where(tuple_(stock_ledger.c.node_id, stock_ledger.c.sku).in_(keys))
        levels_query = levels_query.where(LEVEL_KEY.in_(keys))
    sums = ledger.subquery("sums")
    recorded = levels_query.subquery("recorded")
    return select(
        func.coalesce(recorded.c.node_id, sums.c.node_id).label("node_id"),
        func.coalesce(recorded.c.sku, sums.c.sku).label("sku"),
        func.coalesce(recorded.c.on_hand, 0).label("recorded_on_hand"),
        func.coalesce(recorded.c.reserved, 0).label("recorded_reserved"),
        func.coalesce(sums.c.on_hand, 0).label("ledger_on_hand"),
        func.coalesce(sums.c.reserved, 0).label("ledger_reserved"),
    ).select_from(recorded.join(sums, and_(recorded.c.node_id == sums.c.node_id,
                                           recorded.c.sku == sums.c.sku), full=True))


async def find_drifts(session: AsyncSession, keys: Sequence[tuple[str, str]] | None = None, *,
                      limit: int | None = None) -> tuple[int, int, list[Drift]]:
    """(levels compared, levels drifted, the first `limit` drifted levels by node and SKU).
    The comparison runs in the database, so only the reported levels travel, however large
    the ledger."""
    selected = sorted(keys) if keys is not None else None
    compared = _compared(selected).subquery("compared")
    checked = await session.scalar(select(func.count()).select_from(compared))
    statement = (
        select(compared, func.count().over().label("drifted"))
        .where(or_(compared.c.recorded_on_hand != compared.c.ledger_on_hand,
                   compared.c.recorded_reserved != compared.c.ledger_reserved))
        .order_by(compared.c.node_id, compared.c.sku)
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    found = [
        Drift(row.node_id, row.sku,
              Figures(int(row.recorded_on_hand), int(row.recorded_reserved)),
              Figures(int(row.ledger_on_hand), int(row.ledger_reserved)))
        for row in rows
    ]
    return int(checked or 0), int(rows[0].drifted) if rows else 0, found


async def repair_drifts(session: AsyncSession, found: Sequence[Drift]) -> list[Drift]:
    """Sets each drifted level to its ledger's figures, with a DRIFT_REPAIR ledger row of zero
    deltas that records the difference. The levels are locked first and the drift measured
    again under the lock, so a movement committed since the first read is not undone.
    Returns the drifts repaired."""
    keys = sorted((d.node_id, d.sku) for d in found)
    if not keys:
        return []
    await session.execute(
        pg_insert(stock_levels)
        .values([{"node_id": n, "sku": s, "on_hand": 0, "reserved": 0} for n, s in keys])
        .on_conflict_do_nothing()
    )
    await session.execute(select(stock_levels.c.node_id).where(LEVEL_KEY.in_(keys))
                          .order_by(stock_levels.c.node_id, stock_levels.c.sku)
                          .with_for_update())
    _, _, confirmed = await find_drifts(session, keys)
    fixable = [d for d in confirmed if stock_rules.repairable(d)]
    for drift in fixable:
        await session.execute(
            update(stock_levels)
            .where(stock_levels.c.node_id == drift.node_id, stock_levels.c.sku == drift.sku)
            .values(on_hand=drift.ledger.on_hand, reserved=drift.ledger.reserved)
        )
    if fixable:
        await session.execute(stock_ledger.insert(), [
            {"node_id": d.node_id, "sku": d.sku, "kind": DRIFT_REPAIR, "on_hand_delta": 0,
             "reserved_delta": 0,
             "reference": json.dumps({
                 "recorded": {"on_hand": d.recorded.on_hand, "reserved": d.recorded.reserved},
                 "ledger": {"on_hand": d.ledger.on_hand, "reserved": d.ledger.reserved},
             }, sort_keys=True)}
            for d in fixable
        ])
    return fixable


# --- Channel buffers and available-to-sell ---

async def set_buffer(session: AsyncSession, channel: str, sku: str, buffer: int) -> None:
    statement = pg_insert(channel_buffers).values(channel=channel, sku=sku, buffer=buffer)
    await session.execute(statement.on_conflict_do_update(
        index_elements=[channel_buffers.c.channel, channel_buffers.c.sku],
        set_={"buffer": statement.excluded.buffer}))


async def delete_buffer(session: AsyncSession, channel: str, sku: str) -> bool:
    statement = (
        delete(channel_buffers)
        .where(channel_buffers.c.channel == channel, channel_buffers.c.sku == sku)
        .returning(channel_buffers.c.buffer)
    )
    return (await session.scalar(statement)) is not None


async def list_buffers(session: AsyncSession, *, channel: str | None,
                       after: Sequence[str] | None, limit: int) -> Sequence[Row[Any]]:
    key = tuple_(channel_buffers.c.channel, channel_buffers.c.sku)
    statement = select(channel_buffers).order_by(channel_buffers.c.channel,
                                                 channel_buffers.c.sku).limit(limit)
    if channel is not None:
        statement = statement.where(channel_buffers.c.channel == channel)
    if after is not None:
        statement = statement.where(key > tuple_(literal(after[0]), literal(after[1])))
    return (await session.execute(statement)).all()


async def buffers_for(session: AsyncSession, sku: str) -> dict[str, int]:
    """Per channel, the buffer applying to the SKU: its own, else the channel's "*"."""
    statement = select(channel_buffers).where(channel_buffers.c.sku.in_((sku, "*")))
    found: dict[str, int] = {}
    for row in sorted(await session.execute(statement), key=lambda r: r.sku != "*"):
        found[row.channel] = row.buffer  # a SKU's own buffer (sorted last) wins over "*"
    return found


async def levels_of_sku(session: AsyncSession, sku: str) -> Sequence[Row[Any]]:
    statement = (
        select(stock_levels.c.node_id, stock_levels.c.sku, stock_levels.c.on_hand,
               stock_levels.c.reserved, stock_levels.c.safety_stock)
        .where(stock_levels.c.sku == sku)
        .order_by(stock_levels.c.node_id)
    )
    return (await session.execute(statement)).all()


async def level_keys_of_sku(session: AsyncSession, sku: str) -> list[tuple[str, str]]:
    statement = select(stock_levels.c.node_id, stock_levels.c.sku).where(
        stock_levels.c.sku == sku)
    return [(row.node_id, row.sku) for row in await session.execute(statement)]


# --- Replenishment ---

async def levels_at_reorder_point(session: AsyncSession, *, node_id: str | None,
                                  after: Sequence[str] | None,
                                  limit: int) -> Sequence[Row[Any]]:
    statement = (
        levels_with_products()
        .where(stock_levels.c.at_reorder_point, products.c.deleted.is_(false()))
        .order_by(stock_levels.c.node_id, stock_levels.c.sku)
        .limit(limit)
    )
    if node_id is not None:
        statement = statement.where(stock_levels.c.node_id == node_id)
    if after is not None:
        statement = statement.where(and_(LEVEL_KEY > tuple_(literal(after[0]),
                                                            literal(after[1]))))
    return (await session.execute(statement)).all()

