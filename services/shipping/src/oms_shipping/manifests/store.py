"""SQL for manifests: recording a close by its request_id, moving a day's open labels onto
it, reading and listing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from oms_platform.filtering import Condition
from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_shipping.tables import labels, manifests

MANIFEST_COLUMNS = {"carrier": manifests.c.carrier, "node_id": manifests.c.node_id}


async def insert_manifest(session: AsyncSession, values: Mapping[str, Any]) -> Row[Any] | None:
    """The new manifest; None when one with the request_id exists (a retried close)."""
    statement = (insert(manifests).values(**values, parcel_count=0, total_weight_grams=0)
                 .on_conflict_do_nothing(index_elements=[manifests.c.request_id])
                 .returning(*manifests.c))
    return (await session.execute(statement)).one_or_none()


async def manifest_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    return (await session.execute(
        select(manifests).where(manifests.c.request_id == request_id))).one_or_none()


async def manifest_by_id(session: AsyncSession, manifest_id: UUID) -> Row[Any] | None:
    return (await session.execute(
        select(manifests).where(manifests.c.id == manifest_id))).one_or_none()


async def day_closed(session: AsyncSession, carrier: str, node_id: str, day: date) -> bool:
    found = await session.scalar(
        select(manifests.c.id).where(manifests.c.carrier == carrier,
                                     manifests.c.node_id == node_id,
                                     manifests.c.ship_date == day).limit(1))
    return found is not None


async def take_open_labels(session: AsyncSession, manifest_id: UUID, carrier: str,
                           node_id: str, day: date, limit: int) -> Row[Any]:
    """Puts the oldest open labels of the carrier at the node due by ``day`` (at most
    ``limit``) on the manifest, and sets its totals: one statement, so a label voided
    concurrently is either voided first (and left off) or manifested first (and its void
    refused)."""
    due = (select(labels.c.id)
           .where(labels.c.carrier == carrier, labels.c.node_id == node_id,
                  labels.c.state == "PURCHASED", labels.c.ship_date <= day)
           .order_by(labels.c.create_time, labels.c.id).limit(limit))
    taken = (update(labels)
             .where(labels.c.id.in_(due.scalar_subquery()), labels.c.state == "PURCHASED")
             .values(state="MANIFESTED", manifest_id=manifest_id, update_time=func.now())
             .returning(labels.c.weight_grams).cte("taken"))
    statement = (update(manifests).add_cte(taken).where(manifests.c.id == manifest_id)
                 .values(parcel_count=select(func.count()).select_from(taken).scalar_subquery(),
                         total_weight_grams=select(func.coalesce(func.sum(taken.c.weight_grams),
                                                                 0)).scalar_subquery())
                 .returning(*manifests.c))
    return (await session.execute(statement)).one()


async def manifest_labels(session: AsyncSession, manifest_id: UUID) -> Sequence[Row[Any]]:
    return (await session.execute(
        select(labels).where(labels.c.manifest_id == manifest_id)
        .order_by(labels.c.create_time, labels.c.id))).all()


async def label_ids(session: AsyncSession, manifest_ids: Sequence[UUID]
                    ) -> dict[UUID, list[UUID]]:
    rows = (await session.execute(
        select(labels.c.manifest_id, labels.c.id).where(labels.c.manifest_id.in_(manifest_ids))
        .order_by(labels.c.create_time, labels.c.id))).all()
    found: dict[UUID, list[UUID]] = {m: [] for m in manifest_ids}
    for manifest_id, label_id in rows:
        found[manifest_id].append(label_id)
    return found


async def list_manifests(session: AsyncSession, conditions: Sequence[Condition], *,
                         after: tuple[datetime, UUID] | None,
                         limit: int) -> Sequence[Row[Any]]:
    statement = (select(manifests)
                 .order_by(manifests.c.create_time.desc(), manifests.c.id.desc()).limit(limit))
    if after is not None:
        time, manifest_id = after
        statement = statement.where(or_(manifests.c.create_time < time,
                                        and_(manifests.c.create_time == time,
                                             manifests.c.id < manifest_id)))
    for condition in conditions:
        column = MANIFEST_COLUMNS[condition.field]
        value = str(condition.value)
        statement = statement.where(column != value if condition.operator == "!="
                                    else column == value)
    return (await session.execute(statement)).all()
