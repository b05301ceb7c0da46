"""Storage of rate cards and shipping rules, and the snapshot of everything the rate shop
reads. Each function takes the caller's session, so that a request decides where its
transaction begins and ends."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Row, delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_shipping.carriers import convert as carriers_convert
from oms_shipping.carriers.domain import Carrier, Origin
from oms_shipping.rating import convert
from oms_shipping.rating.cards import RateCard
from oms_shipping.rating.rules import ShippingRule
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


@dataclass(frozen=True)
class RatingData:
    """What the rate shop reads, as domain objects, at one rating version."""

    version: int
    carriers: tuple[Carrier, ...]
    origins: Mapping[str, Origin]
    cards: Mapping[str, Sequence[RateCard]]  # by service code
    rules: tuple[ShippingRule, ...]


class RatingCache:
    """Carriers, origins, rate cards and rules held in memory as domain objects, read again
    only when the rating version moved. The version is bumped by a trigger on every change to
    those tables, from any replica; it is read at most once per ``refresh_seconds`` (0: on
    every call), and at once after a change made through this replica (``invalidate``). So a
    rate shop costs no query at all in the steady state, sees this replica's own changes on
    the next call and another replica's within ``refresh_seconds``."""

    def __init__(self, refresh_seconds: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._data: RatingData | None = None
        self._checked_at = -math.inf
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        # Moved by `invalidate`: a check that began before it must not mark the cache fresh.
        self._generation = 0

    def invalidate(self) -> None:
        self._checked_at = -math.inf
        self._generation += 1

    async def current(self, sessions: async_sessionmaker[AsyncSession]) -> RatingData:
        data = self._data
        now = self._clock()
        generation = self._generation
        if data is not None and now - self._checked_at < self._refresh_seconds:
            return data
        async with sessions() as session:
            version = await current_version(session)
            if data is None or data.version != version:
                # One reload at a time; callers that waited find it done.
                async with self._lock:
                    data = self._data
                    if data is None or data.version < version:
                        data = _rating_data(await rating_rows(session))
                        self._data = data
        if generation == self._generation:
            self._checked_at = max(self._checked_at, now)
        return data


def _rating_data(rows: RatingRows) -> RatingData:
    cards = [convert.card_from_row(row) for row in rows.cards]
    return RatingData(
        version=rows.version,
        carriers=tuple(carriers_convert.carrier_of(row) for row in rows.carriers),
        origins={row.node_id: carriers_convert.origin_of(row) for row in rows.origins},
        cards=convert.cards_by_service(cards),
        rules=tuple(convert.rule_from_row(row) for row in rows.rules),
    )
