"""Storage of rate cards and shipping rules, and the snapshot of everything the rate shop
reads. Each function takes the caller's session, so that a request decides where its
transaction begins and ends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Row, delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_shipping.tables import carriers, origins, rate_cards, rating_version, shipping_rules


async def insert_card(session: AsyncSession, values: Mapping[str, Any]) -> Row[Any] | None:
    """The new card, or None if its id or request id is taken."""
    statement = pg_insert(rate_cards).values(**values).on_conflict_do_nothing().returning(
        *rate_cards.c)
    return (await session.execute(statement)).one_or_none()


async def replace_card(session: AsyncSession, values: Mapping[str, Any]) -> Row[Any]:
    """Creates the card, or replaces the one of its id (keeping its create time)."""
    changed = {k: v for k, v in values.items() if k != "rate_card_id"}
    statement = pg_insert(rate_cards).values(**values).on_conflict_do_update(
        index_elements=[rate_cards.c.rate_card_id], set_=changed).returning(*rate_cards.c)
    return (await session.execute(statement)).one()


async def card_by_id(session: AsyncSession, rate_card_id: str) -> Row[Any] | None:
    statement = select(rate_cards).where(rate_cards.c.rate_card_id == rate_card_id)
    return (await session.execute(statement)).one_or_none()


async def card_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    statement = select(rate_cards).where(rate_cards.c.request_id == request_id)
    return (await session.execute(statement)).one_or_none()


async def list_cards(session: AsyncSession, *, carrier_id: str, after: str | None,
                     limit: int) -> Sequence[Row[Any]]:
    statement = select(rate_cards).order_by(rate_cards.c.rate_card_id).limit(limit)
    if carrier_id:
        statement = statement.where(rate_cards.c.carrier_id == carrier_id)
    if after is not None:
        statement = statement.where(rate_cards.c.rate_card_id > after)
    return (await session.execute(statement)).all()


async def delete_card(session: AsyncSession, rate_card_id: str) -> Row[Any] | None:
    statement = delete(rate_cards).where(rate_cards.c.rate_card_id == rate_card_id).returning(
        *rate_cards.c)
    return (await session.execute(statement)).one_or_none()


# --- Shipping rules ---


async def insert_rule(session: AsyncSession, values: Mapping[str, Any]) -> Row[Any] | None:
    statement = pg_insert(shipping_rules).values(**values).on_conflict_do_nothing().returning(
        *shipping_rules.c)
    return (await session.execute(statement)).one_or_none()


async def rule_by_request(session: AsyncSession, request_id: str) -> Row[Any] | None:
    statement = select(shipping_rules).where(shipping_rules.c.request_id == request_id)
    return (await session.execute(statement)).one_or_none()


async def list_rules(session: AsyncSession, *, after: tuple[int, str] | None,
                     limit: int) -> Sequence[Row[Any]]:
    """In evaluation order: priority, then id."""
    statement = (select(shipping_rules)
                 .order_by(shipping_rules.c.priority, shipping_rules.c.rule_id).limit(limit))
    if after is not None:
        statement = statement.where(
            tuple_(shipping_rules.c.priority, shipping_rules.c.rule_id) > tuple_(*after))
    return (await session.execute(statement)).all()


async def delete_rule(session: AsyncSession, rule_id: str) -> Row[Any] | None:
    statement = delete(shipping_rules).where(shipping_rules.c.rule_id == rule_id).returning(
        *shipping_rules.c)
    return (await session.execute(statement)).one_or_none()


# --- What the rate shop reads ---


async def current_version(session: AsyncSession) -> int:
    """The number every change to carriers, origins, cards and rules moves (a trigger)."""
    return int(await session.scalar(select(rating_version.c.version)) or 0)


class RatingRows(NamedTuple):
    version: int
    carriers: Sequence[Row[Any]]
    origins: Sequence[Row[Any]]
    cards: Sequence[Row[Any]]
    rules: Sequence[Row[Any]]


async def rating_rows(session: AsyncSession) -> RatingRows:
    """Everything the rate shop reads, with the version read first: a change committed in
    between then shows as a newer version on the next call and is read again, never the
    other way round (newer rows under an older number would be kept)."""
    version = await current_version(session)
    return RatingRows(
        version,
        (await session.execute(select(carriers).order_by(carriers.c.carrier_id))).all(),
        (await session.execute(select(origins))).all(),
        (await session.execute(select(rate_cards))).all(),
        (await session.execute(select(shipping_rules))).all(),
    )
