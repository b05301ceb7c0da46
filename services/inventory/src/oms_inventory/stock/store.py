"""Storage of stock: levels, the ledger every movement writes a row to (in the caller's
transaction, next to the level it changes), receipts, counts, safety stock, the drift check,
channel buffers and replenishment.

`publish_changes` is what every stock movement ends with: a `StockLevelChanged` event per
touched level, so that channel connectors can update their listings before they oversell, and a
`ReorderPointReached` event for each level whose available stock has just fallen to its
reorder point.

Call `publish_changes` once per transaction with every (node_id, sku) it touched, after the
writes: it reads the levels as the transaction left them and adds the events to the outbox in
that same transaction. It runs on the allocation hot path, so it costs a constant number of
statements whatever the number of keys: one read of the levels with their products, one of
the network totals, one of the channel buffers, and only when needed one read of the ledger
(for velocities older than the refresh interval) and one batched write of the replenishment
state. Because the caller has already written (and so locked) each touched level, two
transactions never both see a level cross its reorder point: the second waits for the first
and then reads the flag the first set."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from oms_platform.filtering import Condition
from oms_platform.values import timestamp
from sqlalchemy import (
    Boolean,
    Row,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_inventory.catalogue.store import text_condition
from oms_inventory.settings import InventorySettings
from oms_inventory.stock import convert
from oms_inventory.stock.domain import (
    ALL_SKUS,
    Drift,
    Figures,
    LedgerKind,
    Replenishment,
    at_reorder_point,
    daily_velocity,
    repairable,
    replenishment,
)
from oms_inventory.tables import (
    add_events,
    channel_buffers,
    count_tasks,
    fulfilment_nodes,
    products,
    stock_ledger,
    stock_levels,
)

AVAILABLE = func.greatest(
    stock_levels.c.on_hand - stock_levels.c.reserved - stock_levels.c.safety_stock, 0
)



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
            [{"node_id": node_id, "sku": sku, "kind": LedgerKind.RECEIPT, "on_hand_delta": quantity,
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
    fixable = [d for d in confirmed if repairable(d)]
    for drift in fixable:
        await session.execute(
            update(stock_levels)
            .where(stock_levels.c.node_id == drift.node_id, stock_levels.c.sku == drift.sku)
            .values(on_hand=drift.ledger.on_hand, reserved=drift.ledger.reserved)
        )
    if fixable:
        await session.execute(stock_ledger.insert(), [
            {"node_id": d.node_id, "sku": d.sku, "kind": LedgerKind.DRIFT_REPAIR,
             "on_hand_delta": 0, "reserved_delta": 0,
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


async def change_on_hand(session: AsyncSession, node_id: str, sku: str,
                         delta: int) -> tuple[int, int] | None:
    """Adds ``delta`` to on-hand in one conditional write; None if that would leave less on
    hand than is reserved."""
    await session.execute(
        pg_insert(stock_levels)
        .values(node_id=node_id, sku=sku, on_hand=0, reserved=0)
        .on_conflict_do_nothing()
    )
    statement = (
        update(stock_levels)
        .where(
            stock_levels.c.node_id == node_id,
            stock_levels.c.sku == sku,
            stock_levels.c.on_hand + delta >= stock_levels.c.reserved,
        )
        .values(on_hand=stock_levels.c.on_hand + delta)
        .returning(stock_levels.c.on_hand, stock_levels.c.reserved)
    )
    row = (await session.execute(statement)).one_or_none()
    return (row.on_hand, row.reserved) if row else None


# --- Velocity, reorder points and the events of a movement ---

async def velocities(session: AsyncSession, keys: Sequence[tuple[str, str]],
                     window_days: int) -> dict[tuple[str, str], Decimal]:
    """Units sold per day over the window, per level: one grouped read of the ledger."""
    if not keys:
        return {}
    reserved = func.coalesce(func.sum(stock_ledger.c.reserved_delta).filter(
        stock_ledger.c.kind == LedgerKind.RESERVATION), 0)
    released = func.coalesce(func.sum(-stock_ledger.c.reserved_delta).filter(
        stock_ledger.c.kind == LedgerKind.RELEASE), 0)
    statement = (
        select(stock_ledger.c.node_id, stock_ledger.c.sku, reserved, released)
        .where(
            tuple_(stock_ledger.c.node_id, stock_ledger.c.sku).in_(sorted(keys)),
            stock_ledger.c.kind.in_((LedgerKind.RESERVATION, LedgerKind.RELEASE)),
            stock_ledger.c.at >= func.now() - timedelta(days=window_days),
        )
        .group_by(stock_ledger.c.node_id, stock_ledger.c.sku)
    )
    found = {
        (node_id, sku): daily_velocity(int(taken), int(given_back), window_days)
        for node_id, sku, taken, given_back in await session.execute(statement)
    }
    return {key: found.get(key, Decimal(0)) for key in keys}


LEVEL_COLUMNS = (
    stock_levels.c.node_id,
    stock_levels.c.sku,
    stock_levels.c.on_hand,
    stock_levels.c.reserved,
    stock_levels.c.safety_stock,
    AVAILABLE.label("available"),
    stock_levels.c.daily_velocity,
    stock_levels.c.velocity_time,
    stock_levels.c.at_reorder_point,
    products.c.reorder_point.label("fixed_reorder_point"),
    products.c.supplier_lead_time_days,
)


def levels_with_products() -> Any:
    return select(*LEVEL_COLUMNS).join(products, products.c.sku == stock_levels.c.sku)


async def publish_changes(session: AsyncSession, keys: Iterable[tuple[str, str]],
                          settings: InventorySettings) -> None:
    """What every stock movement ends with, in its transaction: the events of the levels at
    these (node_id, sku) keys, as the transaction left them (see the module's docstring)."""
    touched = sorted(set(keys))
    if not touched:
        return
    skus = sorted({sku for _, sku in touched})
    levels = (
        await session.execute(
            levels_with_products()
            .where(tuple_(stock_levels.c.node_id, stock_levels.c.sku).in_(touched))
            # The order every writer locks levels in: a flag written below never deadlocks.
            .order_by(stock_levels.c.node_id, stock_levels.c.sku)
        )
    ).all()
    reached = await _track_reorder_points(session, levels, settings)
    network = dict(
        (
            await session.execute(
                select(stock_levels.c.sku, func.sum(AVAILABLE))
                .where(stock_levels.c.sku.in_(skus))
                .group_by(stock_levels.c.sku)
            )
        ).all()
    )
    buffers: dict[str, dict[str, int]] = {}
    for channel, sku, buffer in await session.execute(
        select(channel_buffers.c.channel, channel_buffers.c.sku, channel_buffers.c.buffer).where(
            or_(channel_buffers.c.sku.in_(skus), channel_buffers.c.sku == ALL_SKUS)
        )
    ):
        per_channel = buffers.setdefault(channel, {})
        per_channel[sku] = buffer
    await add_events(session, convert.level_events(
        levels, network, buffers, reached, timestamp(datetime.now(UTC))))


async def _track_reorder_points(session: AsyncSession, levels: Sequence[Row[Any]],
                                settings: InventorySettings) -> list[Replenishment]:
    """Flips each level's at-reorder-point flag where it changed and returns the levels that
    have just reached their point. Velocities are read from the ledger only where the cached
    one is older than the refresh interval, so a hot SKU costs no ledger scan."""
    now = datetime.now(UTC)
    fresh_after = now - timedelta(seconds=settings.velocity_refresh_seconds)
    stale = [(row.node_id, row.sku) for row in levels
             if row.velocity_time is None or row.velocity_time <= fresh_after]
    refreshed = await velocities(session, stale, settings.velocity_window_days)
    reached: list[Replenishment] = []
    changes: list[dict[str, Any]] = []
    for row in levels:
        key = (row.node_id, row.sku)
        velocity = refreshed.get(key, row.daily_velocity)
        state = replenishment(row, velocity, settings.review_period_days)
        at_point = at_reorder_point(state.available, state.reorder_point)
        if at_point and not row.at_reorder_point:
            reached.append(state)
        if key in refreshed or at_point != row.at_reorder_point:
            changes.append({
                "b_node_id": row.node_id, "b_sku": row.sku, "b_at": at_point,
                "b_velocity": velocity, "b_refresh": key in refreshed,
            })
    if changes:
        await session.execute(
            update(stock_levels)
            .where(and_(stock_levels.c.node_id == bindparam("b_node_id"),
                        stock_levels.c.sku == bindparam("b_sku")))
            .values(
                at_reorder_point=bindparam("b_at"),
                daily_velocity=bindparam("b_velocity"),
                velocity_time=case((bindparam("b_refresh", type_=Boolean), func.now()),
                                   else_=stock_levels.c.velocity_time),
            )
            .execution_options(synchronize_session=False),
            changes,
        )
    return reached


# --- Count tasks ---

async def open_count_task(session: AsyncSession, *, node_id: str, bin_code: str, sku: str,
                          reason: str, reference: str) -> bool:
    """Opens a task to count the bin; False when one is open for the bin and SKU already."""
    opened = await session.scalar(
        pg_insert(count_tasks)
        .values(node_id=node_id, bin_code=bin_code, sku=sku, reason=reason,
                reference=reference)
        .on_conflict_do_nothing(index_elements=[count_tasks.c.node_id, count_tasks.c.bin_code,
                                                count_tasks.c.sku],
                                index_where=count_tasks.c.close_time.is_(None))
        .returning(count_tasks.c.id))
    return opened is not None


async def close_count_tasks(session: AsyncSession, node_id: str, sku: str) -> int:
    """Closes the open tasks of the SKU at the node (a count of it there); how many."""
    result = await session.execute(
        update(count_tasks)
        .where(count_tasks.c.node_id == node_id, count_tasks.c.sku == sku,
               count_tasks.c.close_time.is_(None))
        .values(close_time=func.now()))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def count_task_page(session: AsyncSession, *, node_id: str | None, show_closed: bool,
                          after: int | None, limit: int) -> Sequence[Any]:
    """Tasks oldest first (by id), keyset-paged."""
    statement = select(count_tasks).order_by(count_tasks.c.id).limit(limit)
    if node_id is not None:
        statement = statement.where(count_tasks.c.node_id == node_id)
    if not show_closed:
        statement = statement.where(count_tasks.c.close_time.is_(None))
    if after is not None:
        statement = statement.where(count_tasks.c.id > after)
    return (await session.execute(statement)).all()
