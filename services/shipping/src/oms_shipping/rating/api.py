"""The rate cards', shipping rules' and rate shop's RPCs. A mixin of the service's servicer,
which provides ``self._sessions``, ``self._settings`` and ``self._rating`` (a
:class:`RatingCache`)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from oms.shipping.v1 import shipping_pb2
from oms_platform import lists
from oms_platform.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound, Violations
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_shipping.carriers import convert as carriers_convert
from oms_shipping.carriers import domain as carriers_domain
from oms_shipping.carriers import store as carriers_store
from oms_shipping.carriers.domain import Carrier, Origin
from oms_shipping.rating import convert, domain, store
from oms_shipping.rating.domain import RATE_CARD_ID, RateCard, ShippingRule
from oms_shipping.settings import ShippingSettings

RATE_CARD_NAME = re.compile(r"^rateCards/([^/]+)$")
RULE_NAME = re.compile(r"^shippingRules/([^/]+)$")


@dataclass(frozen=True)
class RatingData:
    """What the rate shop reads, as domain objects, at one rating version."""

    version: int
    carriers: tuple[Carrier, ...]
    origins: Mapping[str, Origin]
    cards: Mapping[str, Sequence[RateCard]]  # by service code
    rules: tuple[ShippingRule, ...]


class RatingCache:
    """Carriers, origins, rate cards and rules held in memory, read again only when the
    rating version (bumped by a trigger on every change to them, from any replica) moved: a
    rate shop then costs one indexed one-row read instead of loading and parsing its cards,
    and is never staler than the last committed change."""

    def __init__(self) -> None:
        self._data: RatingData | None = None
        self._lock = asyncio.Lock()

    async def current(self, sessions: async_sessionmaker[AsyncSession]) -> RatingData:
        async with sessions() as session:
            version = await store.current_version(session)
            data = self._data
            if data is not None and data.version == version:
                return data
            async with self._lock:
                data = self._data
                if data is not None and data.version >= version:
                    return data
                rows = await store.rating_rows(session)
                data = _rating_data(rows)
                self._data = data
                return data


def _rating_data(rows: store.RatingRows) -> RatingData:
    cards = [convert.card_from_row(row) for row in rows.cards]
    return RatingData(
        version=rows.version,
        carriers=tuple(carriers_convert.carrier_of(row) for row in rows.carriers),
        origins={row.node_id: carriers_convert.origin_of(row) for row in rows.origins},
        cards=convert.cards_by_service(cards),
        rules=tuple(convert.rule_from_row(row) for row in rows.rules),
    )


class RatingApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: ShippingSettings
    _rating: RatingCache

    # --- Rate cards ---

    async def CreateRateCard(self, request: shipping_pb2.CreateRateCardRequest,
                             context: grpc.aio.ServicerContext) -> shipping_pb2.RateCard:
        violations = Violations()
        carriers_domain.check_request_id(violations, "request_id", request.request_id)
        carriers_domain.check_pattern(violations, "rate_card_id", request.rate_card_id,
                                      RATE_CARD_ID)
        card = None
        if violations.require(request.HasField("rate_card"), "rate_card", "required"):
            card = convert.card_of(violations, request.rate_card_id, request.rate_card)
            violations.require(bool(card.service_code), "rate_card.service_code", "required")
        violations.raise_if_any()
        assert card is not None
        async with self._sessions.begin() as session:
            if (earlier := await store.card_by_request(session, request.request_id)):
                return _card_message(earlier)
            carrier_id = await _carrier_of(session, card.service_code, "rate_card.service_code")
            values = {**convert.card_values(card, carrier_id), "request_id": request.request_id}
            row = await carriers_store.create_once(
                request.request_id, lambda: store.insert_card(session, values),
                lambda: store.card_by_request(session, request.request_id))
            if row is None:
                raise AlreadyExists(f"rate card {request.rate_card_id} already exists",
                                    metadata={"name": f"rateCards/{request.rate_card_id}"})
        return _card_message(row)

    async def GetRateCard(self, request: shipping_pb2.GetRateCardRequest,
                          context: grpc.aio.ServicerContext) -> shipping_pb2.RateCard:
        rate_card_id = carriers_domain.parse_name(RATE_CARD_NAME, request.name,
                                                  "rateCards/{rate_card_id}")
        async with self._sessions.begin() as session:
            row = await store.card_by_id(session, rate_card_id)
        if row is None:
            raise NotFound(f"rate card {rate_card_id} not found", metadata={"name": request.name})
        return _card_message(row)

    async def ListRateCards(self, request: shipping_pb2.ListRateCardsRequest,
                            context: grpc.aio.ServicerContext
                            ) -> shipping_pb2.ListRateCardsResponse:
        query = {"carrier": request.carrier}
        _, after, size = lists.parameters(request, query, (str,), max_page_size=500)
        async with self._sessions.begin() as session:
            rows = await store.list_cards(session, carrier_id=request.carrier,
                                          after=after[0] if after else None, limit=size + 1)
        return shipping_pb2.ListRateCardsResponse(
            rate_cards=[_card_message(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.rate_card_id],
                                                  query))

    async def DeleteRateCard(self, request: shipping_pb2.DeleteRateCardRequest,
                             context: grpc.aio.ServicerContext) -> shipping_pb2.RateCard:
        rate_card_id = carriers_domain.parse_name(RATE_CARD_NAME, request.name,
                                                  "rateCards/{rate_card_id}")
        async with self._sessions.begin() as session:
            row = await store.delete_card(session, rate_card_id)
        if row is None:
            raise NotFound(f"rate card {rate_card_id} not found", metadata={"name": request.name})
        return _card_message(row)

    async def ImportRateCard(self, request: shipping_pb2.ImportRateCardRequest,
                             context: grpc.aio.ServicerContext) -> shipping_pb2.RateCard:
        violations = Violations()
        carriers_domain.check_pattern(violations, "rate_card_id", request.rate_card_id,
                                      RATE_CARD_ID)
        card = convert.card_from_csv(violations, request.rate_card_id, request.csv)
        violations.raise_if_any()
        # Every row was checked before this transaction: one bad row stores nothing, and a
        # good file replaces the card whole in one statement.
        async with self._sessions.begin() as session:
            carrier_id = await _carrier_of(session, card.service_code, "csv")
            row = await store.replace_card(session, convert.card_values(card, carrier_id))
        return _card_message(row)

    async def ExportRateCard(self, request: shipping_pb2.ExportRateCardRequest,
                             context: grpc.aio.ServicerContext
                             ) -> shipping_pb2.ExportRateCardResponse:
        rate_card_id = carriers_domain.parse_name(RATE_CARD_NAME, request.name,
                                                  "rateCards/{rate_card_id}")
        async with self._sessions.begin() as session:
            row = await store.card_by_id(session, rate_card_id)
        if row is None:
            raise NotFound(f"rate card {rate_card_id} not found", metadata={"name": request.name})
        return shipping_pb2.ExportRateCardResponse(csv=convert.card_csv(convert.card_from_row(row)))

    # --- Shipping rules ---

    async def CreateShippingRule(self, request: shipping_pb2.CreateShippingRuleRequest,
                                 context: grpc.aio.ServicerContext) -> shipping_pb2.ShippingRule:
        violations = Violations()
        carriers_domain.check_request_id(violations, "request_id", request.request_id)
        rule = None
        if violations.require(request.HasField("rule"), "rule", "required"):
            rule = convert.rule_of(violations, request.rule)
        violations.raise_if_any()
        assert rule is not None
        values = {"rule_id": convert.new_rule_id(), **convert.rule_values(rule),
                  "request_id": request.request_id}
        async with self._sessions.begin() as session:
            row = await carriers_store.create_once(
                request.request_id, lambda: store.insert_rule(session, values),
                lambda: store.rule_by_request(session, request.request_id))
        assert row is not None  # a fresh id never conflicts
        return convert.rule_message(row)

    async def ListShippingRules(self, request: shipping_pb2.ListShippingRulesRequest,
                                context: grpc.aio.ServicerContext
                                ) -> shipping_pb2.ListShippingRulesResponse:
        _, after, size = lists.parameters(request, {}, (int, str), max_page_size=500)
        async with self._sessions.begin() as session:
            rows = await store.list_rules(session, after=(after[0], after[1]) if after else None,
                                          limit=size + 1)
        return shipping_pb2.ListShippingRulesResponse(
            rules=[convert.rule_message(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size,
                                                  lambda r: [r.priority, r.rule_id], {}))

    async def DeleteShippingRule(self, request: shipping_pb2.DeleteShippingRuleRequest,
                                 context: grpc.aio.ServicerContext) -> shipping_pb2.ShippingRule:
        rule_id = carriers_domain.parse_name(RULE_NAME, request.name, "shippingRules/{rule_id}")
        async with self._sessions.begin() as session:
            row = await store.delete_rule(session, rule_id)
        if row is None:
            raise NotFound(f"shipping rule {rule_id} not found", metadata={"name": request.name})
        return convert.rule_message(row)

    # --- Rate shopping ---

    async def RateShipment(self, request: shipping_pb2.RateShipmentRequest,
                           context: grpc.aio.ServicerContext
                           ) -> shipping_pb2.RateShipmentResponse:
        return convert.rate_response(await rate(self._sessions, self._rating, self._settings,
                                                request.shipment if request.HasField("shipment")
                                                else None, request.goal))


async def rate(sessions: async_sessionmaker[AsyncSession], cache: RatingCache,
               settings: ShippingSettings, shipment: shipping_pb2.Shipment | None,
               goal: int, *, now: datetime | None = None) -> domain.RateResult:
    """Rates a shipment message: what RateShipment answers, and what a label bought without
    a service code is chosen by. Bad input raises InvalidArgument with every violation."""
    violations = Violations()
    chosen_goal = convert.goal_of(violations, goal)
    if not violations.require(shipment is not None, "shipment", "required"):
        violations.raise_if_any()
    assert shipment is not None
    parsed = convert.shipment_of(violations, shipment, now or datetime.now(UTC))
    violations.raise_if_any()
    data = await cache.current(sessions)
    origin = data.origins.get(shipment.node_id)
    if origin is None:
        raise InvalidArgument([FieldViolation("shipment.node_id",
                                              f"no origin for node {shipment.node_id!r}; "
                                              "create it with CreateOrigin")])
    return domain.rate_shipment(parsed, origin, data.carriers, data.cards, data.rules,
                                goal=chosen_goal,
                                day_value_percent=settings.best_value_day_percent)


async def _carrier_of(session: AsyncSession, service_code: str, path: str) -> str:
    carrier_id = await carriers_store.carrier_of_service(session, service_code)
    if carrier_id is None:
        raise InvalidArgument([FieldViolation(
            path, f"no carrier sells service {service_code!r}; create the carrier first")])
    return carrier_id


def _card_message(row: Row[Any]) -> shipping_pb2.RateCard:
    return convert.card_message(convert.card_from_row(row), row.create_time)
