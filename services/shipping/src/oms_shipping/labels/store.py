"""SQL for labels: claiming a purchase by its request_id, a carrier's closed days at a node,
the tracking serials, voiding, and the list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from oms_platform.filtering import Condition
from sqlalchemy import Row, and_, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_shipping.tables import karrio_label_claims, labels, manifests, tracking_serials

LABEL_COLUMNS = {"carrier": labels.c.carrier, "node_id": labels.c.node_id,
                 "state": labels.c.state, "package": labels.c.package,
                 "tracking_number": labels.c.tracking_number}


async def lock_day(session: AsyncSession, carrier: str, node_id: str, *,
                   closing: bool) -> None:
    """Serialises buying against closing a carrier's day at a node, for this transaction.
    Purchases share the lock, so they never wait on each other; a close takes it alone, so
    no label is bought for a day while that day is being closed and none goes missing from
    its manifest."""
    function = "pg_advisory_xact_lock" if closing else "pg_advisory_xact_lock_shared"
    await session.execute(text(f"SELECT {function}(hashtextextended(:key, 0))"),
                          {"key": f"shipping-day:{carrier}:{node_id}"})


async def closed_days(session: AsyncSession, carrier: str, node_id: str,
                      since: date) -> set[date]:
    rows = await session.scalars(
        select(manifests.c.ship_date).distinct()
        .where(manifests.c.carrier == carrier, manifests.c.node_id == node_id,
               manifests.c.ship_date >= since))
    return set(rows)


async def next_serial(session: AsyncSession) -> int:
    return int(await session.scalar(select(tracking_serials.next_value())))


async def insert_label(session: AsyncSession, values: Mapping[str, Any]) -> Row[Any] | None:
    """The new label; None when a label with the request_id exists (or is being bought in a
    transaction that has not finished: the insert waits for it, then yields to it)."""
    statement = (insert(labels).values(**values)
                 .on_conflict_do_nothing(index_elements=[labels.c.request_id])
                 .returning(*labels.c))
    return (await session.execute(statement)).one_or_none()


async def label_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    return (await session.execute(
        select(labels).where(labels.c.request_id == request_id))).one_or_none()


async def labels_by_request(session: AsyncSession,
                            request_ids: Sequence[str]) -> dict[str, Row[Any]]:
    rows = (await session.execute(
        select(labels).where(labels.c.request_id.in_(request_ids)))).all()
    return {row.request_id: row for row in rows}


async def label_by_id(session: AsyncSession, label_id: UUID) -> Row[Any] | None:
    return (await session.execute(select(labels).where(labels.c.id == label_id))).one_or_none()


async def void_label(session: AsyncSession, label_id: UUID) -> Row[Any] | None:
    """The label voided now; None unless it was PURCHASED. One conditional update, so a
    close that takes the label first leaves nothing to void."""
    statement = (update(labels)
                 .where(labels.c.id == label_id, labels.c.state == "PURCHASED")
                 .values(state="VOIDED", void_time=func.now(), update_time=func.now())
                 .returning(*labels.c))
    return (await session.execute(statement)).one_or_none()


async def list_labels(session: AsyncSession, conditions: Sequence[Condition], *,
                      after: tuple[datetime, UUID] | None, limit: int) -> Sequence[Row[Any]]:
    statement = (select(labels).order_by(labels.c.create_time.desc(), labels.c.id.desc())
                 .limit(limit))
    if after is not None:
        time, label_id = after
        statement = statement.where(or_(labels.c.create_time < time,
                                        and_(labels.c.create_time == time,
                                             labels.c.id < label_id)))
    for condition in conditions:
        column = LABEL_COLUMNS[condition.field]
        value = str(condition.value)
        statement = statement.where(column != value if condition.operator == "!="
                                    else column == value)
    return (await session.execute(statement)).all()


# --- Purchases at a karrio carrier ---


async def claim_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    return (await session.execute(
        select(karrio_label_claims, func.now().label("now"))
        .where(karrio_label_claims.c.request_id == request_id))).one_or_none()


async def insert_claim(session: AsyncSession, values: Mapping[str, Any]) -> bool:
    """Claims the request's purchase; False when it is claimed already (or a label with the
    request_id exists: the caller looked that up in the same transaction)."""
    statement = (insert(karrio_label_claims).values(**values, state="BUYING")
                 .on_conflict_do_nothing(index_elements=[karrio_label_claims.c.request_id])
                 .returning(karrio_label_claims.c.request_id))
    return (await session.execute(statement)).one_or_none() is not None


async def release_claim(session: AsyncSession, request_id: str) -> None:
    await session.execute(delete(karrio_label_claims)
                          .where(karrio_label_claims.c.request_id == request_id))


async def mark_uncertain(session: AsyncSession, request_id: str, detail: str) -> None:
    await session.execute(update(karrio_label_claims)
                          .where(karrio_label_claims.c.request_id == request_id)
                          .values(state="UNCERTAIN", detail=detail[:2000],
                                  update_time=func.now()))
