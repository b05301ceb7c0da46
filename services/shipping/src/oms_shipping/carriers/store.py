"""Storage of carriers (with the codes of their services) and origins. Each function takes
the caller's session, so that a request decides where its transaction begins and ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_shipping.tables import carrier_services, carriers, origins


async def insert_carrier(session: AsyncSession, values: Mapping[str, Any]) -> Row[Any] | None:
    """The new carrier, or None if its id or request id is taken."""
    statement = pg_insert(carriers).values(**values).on_conflict_do_nothing().returning(
        *carriers.c)
    return (await session.execute(statement)).one_or_none()


async def carrier_by_id(session: AsyncSession, carrier_id: str) -> Row[Any] | None:
    statement = select(carriers).where(carriers.c.carrier_id == carrier_id)
    return (await session.execute(statement)).one_or_none()


async def carrier_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    statement = select(carriers).where(carriers.c.request_id == request_id)
    return (await session.execute(statement)).one_or_none()


async def list_carriers(session: AsyncSession, *, after: str | None,
                        limit: int) -> Sequence[Row[Any]]:
    statement = select(carriers).order_by(carriers.c.carrier_id).limit(limit)
    if after is not None:
        statement = statement.where(carriers.c.carrier_id > after)
    return (await session.execute(statement)).all()


async def all_carriers(session: AsyncSession) -> Sequence[Row[Any]]:
    return (await session.execute(select(carriers).order_by(carriers.c.carrier_id))).all()


async def update_carrier(session: AsyncSession, carrier_id: str,
                         changes: Mapping[str, Any]) -> Row[Any] | None:
    statement = (update(carriers).where(carriers.c.carrier_id == carrier_id)
                 .values(**changes, update_time=func.now()).returning(*carriers.c))
    return (await session.execute(statement)).one_or_none()


async def services_sold_elsewhere(session: AsyncSession, carrier_id: str,
                                  codes: Sequence[str]) -> dict[str, str]:
    """Which of these service codes another carrier sells: code -> that carrier."""
    if not codes:
        return {}
    statement = select(carrier_services.c.code, carrier_services.c.carrier_id).where(
        carrier_services.c.code.in_(codes), carrier_services.c.carrier_id != carrier_id)
    return {row.code: row.carrier_id for row in await session.execute(statement)}


async def replace_services(session: AsyncSession, carrier_id: str, codes: Sequence[str]) -> None:
    await session.execute(delete(carrier_services)
                          .where(carrier_services.c.carrier_id == carrier_id))
    if codes:
        await session.execute(insert(carrier_services),
                              [{"code": code, "carrier_id": carrier_id} for code in codes])


async def carrier_of_service(session: AsyncSession, code: str) -> str | None:
    statement = select(carrier_services.c.carrier_id).where(carrier_services.c.code == code)
    return await session.scalar(statement)


# --- Origins ---


async def upsert_origin(session: AsyncSession, node_id: str,
                        values: Mapping[str, Any]) -> Row[Any]:
    statement = pg_insert(origins).values(node_id=node_id, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[origins.c.node_id], set_={**values, "update_time": func.now()},
    ).returning(*origins.c)
    return (await session.execute(statement)).one()


async def origin_by_id(session: AsyncSession, node_id: str) -> Row[Any] | None:
    statement = select(origins).where(origins.c.node_id == node_id)
    return (await session.execute(statement)).one_or_none()


async def list_origins(session: AsyncSession, *, after: str | None,
                       limit: int) -> Sequence[Row[Any]]:
    statement = select(origins).order_by(origins.c.node_id).limit(limit)
    if after is not None:
        statement = statement.where(origins.c.node_id > after)
    return (await session.execute(statement)).all()


async def all_origins(session: AsyncSession) -> Sequence[Row[Any]]:
    return (await session.execute(select(origins))).all()


async def update_origin(session: AsyncSession, node_id: str,
                        changes: Mapping[str, Any]) -> Row[Any] | None:
    statement = (update(origins).where(origins.c.node_id == node_id)
                 .values(**changes, update_time=func.now()).returning(*origins.c))
    return (await session.execute(statement)).one_or_none()


async def create_once(request_id: str, insert_row: Any, by_request: Any) -> Row[Any] | None:
    """Creates a resource unless the request id was seen: then returns the first result.
    None when the resource exists and was created by another request. ``insert_row`` and
    ``by_request`` are coroutine functions returning a row or None."""
    if request_id and (earlier := await by_request()) is not None:
        return earlier
    created = await insert_row()
    if created is None and request_id:
        # A concurrent call with the same request id may have committed in between.
        return await by_request()
    return created
