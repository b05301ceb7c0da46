"""SQL of return policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_returns.tables import return_policies as policies_t


async def by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    return (await session.execute(
        select(policies_t).where(policies_t.c.request_id == request_id))).first()


async def get(session: AsyncSession, policy_id: str) -> Row[Any] | None:
    return (await session.execute(
        select(policies_t).where(policies_t.c.id == policy_id))).first()


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(policies_t)) or 0)


async def insert_policy(session: AsyncSession, *, policy_id: str, request_id: str,
                        channel: str, sku: str, category: str, terms: dict[str, Any],
                        now: datetime) -> Row[Any] | None:
    """The new row; None when its id, its request id or its scope is taken (the caller
    tells which)."""
    return (await session.execute(
        insert(policies_t).values(id=policy_id, request_id=request_id, channel=channel,
                                  sku=sku, category=category, terms=terms, create_time=now)
        .on_conflict_do_nothing().returning(*policies_t.c))).first()


async def by_scope(session: AsyncSession, channel: str, sku: str, category: str
                   ) -> Row[Any] | None:
    return (await session.execute(select(policies_t).where(
        policies_t.c.channel == channel, policies_t.c.sku == sku,
        policies_t.c.category == category))).first()


async def page(session: AsyncSession, *, after: str | None, limit: int) -> list[Row[Any]]:
    query = select(policies_t).order_by(policies_t.c.id).limit(limit)
    if after is not None:
        query = query.where(policies_t.c.id > after)
    return list((await session.execute(query)).all())


async def every(session: AsyncSession, limit: int) -> list[Row[Any]]:
    """Every policy (there are at most ``limit``: creation refuses more)."""
    return list((await session.execute(
        select(policies_t).order_by(policies_t.c.id).limit(limit))).all())


async def remove(session: AsyncSession, policy_id: str) -> Row[Any] | None:
    return (await session.execute(delete(policies_t).where(policies_t.c.id == policy_id)
                                  .returning(*policies_t.c))).first()
