"""The rate cards', shipping rules' and rate shop's RPCs. A mixin of the service's servicer,
which provides ``self._sessions``, ``self._settings`` and ``self._rating`` (a
:class:`RatingCache`)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog
from oms.shipping.v1 import shipping_pb2
from oms_platform import lists
from oms_platform.errors import (
    AlreadyExists,
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_shipping.carrier_api import convert as carrier_convert
from oms_shipping.carrier_api.client import KarrioCarriers
from oms_shipping.carrier_api.domain import CarrierRate, RateQuery
from oms_shipping.carriers import domain as carriers_domain
from oms_shipping.carriers import store as carriers_store
from oms_shipping.carriers.domain import Carrier, CarrierService, Mode, Origin
from oms_shipping.rating import convert, domain, store
from oms_shipping.rating.cards import RATE_CARD_ID
from oms_shipping.rating.store import RatingCache
from oms_shipping.settings import KarrioSettings, ShippingSettings

log = structlog.get_logger(__name__)

RATE_CARD_NAME = re.compile(r"^rateCards/([^/]+)$")
RULE_NAME = re.compile(r"^shippingRules/([^/]+)$")


class RatingApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: ShippingSettings
    _rating: RatingCache
    _carriers: KarrioCarriers
    _karrio: KarrioSettings

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
        # Committed: the next rate shop here reads it (see RatingCache).
        self._rating.invalidate()
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
        # Committed: the next rate shop here reads it (see RatingCache).
        self._rating.invalidate()
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
        # Committed: the next rate shop here reads it (see RatingCache).
        self._rating.invalidate()
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
        # Committed: the next rate shop here reads it (see RatingCache).
        self._rating.invalidate()
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
        # Committed: the next rate shop here reads it (see RatingCache).
        self._rating.invalidate()
        if row is None:
            raise NotFound(f"shipping rule {rule_id} not found", metadata={"name": request.name})
        return convert.rule_message(row)

    # --- Rate shopping ---

    async def RateShipment(self, request: shipping_pb2.RateShipmentRequest,
                           context: grpc.aio.ServicerContext
                           ) -> shipping_pb2.RateShipmentResponse:
        return convert.rate_response(await rate(self._sessions, self._rating, self._settings,
                                                request.shipment if request.HasField("shipment")
                                                else None, request.goal,
                                                carriers=self._carriers, karrio=self._karrio))


async def rate(sessions: async_sessionmaker[AsyncSession], cache: RatingCache,
               settings: ShippingSettings, shipment: shipping_pb2.Shipment | None,
               goal: int, *, now: datetime | None = None,
               carriers: KarrioCarriers | None = None,
               karrio: KarrioSettings | None = None) -> domain.RateResult:
    """Rates a shipment message: what RateShipment answers, and what a label bought without
    a service code is chosen by. Bad input raises InvalidArgument with every violation.

    Carriers in karrio mode are rated through their own APIs (``carriers``), all at once and
    while the table-rate carriers are priced here, each call bounded by the adapter's
    timeout; one that is down or refuses is listed ineligible with why, and the others'
    quotes are chosen from all the same. With no karrio carrier the table-rate path awaits
    nothing more than before."""
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
    if not any(c.mode is Mode.KARRIO for c in data.carriers):
        return domain.rate_shipment(parsed, origin, data.carriers, data.cards, data.rules,
                                    goal=chosen_goal,
                                    day_value_percent=settings.best_value_day_percent)
    table = [c for c in data.carriers if c.mode is not Mode.KARRIO]
    asked, ineligible = _karrio_targets(parsed, origin, data.carriers,
                                        karrio if carriers is not None else None)
    assert carriers is not None or not asked
    calls = [asyncio.ensure_future(_carrier_rates(carriers, carrier, services, parsed, origin,
                                                  shipment.destination))
             for carrier, services in asked]
    try:
        # Priced while the carriers' calls run in the adapter's threads.
        quotes, table_ineligible = domain.table_rate_quotes(parsed, origin, table, data.cards)
        answers = await asyncio.gather(*calls) if calls else []
    finally:
        for call in calls:
            call.cancel()  # the caller went away: nothing is left waiting on a carrier
    for carrier_quotes, reasons in answers:
        quotes += carrier_quotes
        ineligible += reasons
    return domain.decide(parsed, quotes, [*table_ineligible, *ineligible], data.rules,
                         goal=chosen_goal, day_value_percent=settings.best_value_day_percent)


def _karrio_targets(shipment: domain.Shipment, origin: Origin, carriers: Sequence[Carrier],
                    karrio: KarrioSettings | None
                    ) -> tuple[list[tuple[Carrier, list[CarrierService]]], list[str]]:
    """The karrio carriers to ask and their services that can carry the shipment by our own
    carrier data; the reasons of the others. A carrier with no account configured is not
    asked (the plugins are never loaded for it)."""
    asked: list[tuple[Carrier, list[CarrierService]]] = []
    ineligible: list[str] = []
    for carrier in carriers:
        if carrier.mode is not Mode.KARRIO:
            continue
        services = []
        for service in carrier.services:
            reason = domain.service_ineligible(shipment, origin, carrier, service)
            if reason:
                ineligible.append(f"{service.code}: {reason}")
            else:
                services.append(service)
        if not services:
            continue
        if karrio is None or not karrio.configured(carrier.karrio_carrier):
            ineligible += [f"{s.code}: carrier {carrier.carrier_id} has no karrio account "
                           f"configured for {carrier.karrio_carrier!r}" for s in services]
            continue
        asked.append((carrier, services))
    return asked, ineligible


async def _carrier_rates(carriers: KarrioCarriers, carrier: Carrier,
                         services: Sequence[CarrierService], shipment: domain.Shipment,
                         origin: Origin, destination: Any) -> tuple[list[domain.Quote],
                                                                    list[str]]:
    """One carrier's quotes for its eligible services (our service codes are karrio's), or
    each service listed with why the carrier gave none. Never raises for the carrier's sake:
    one carrier down must not fail the rate shop."""
    query = RateQuery(
        carrier=carrier.karrio_carrier,
        origin=carrier_convert.origin_address(origin),
        destination=carrier_convert.address_of(destination,
                                               residential=shipment.destination.residential),
        parcels=carrier_convert.parcels_of(shipment.parcels),
        service_codes=tuple(s.code for s in services),
        ship_date=shipment.ready_time.date())
    try:
        rates = await carriers.rate(query)
    except DomainError as error:
        return [], [f"{s.code}: {error.message}" for s in services]
    except Exception as error:  # an adapter bug is this carrier's failure, not the call's
        log.warning("carrier rating failed", carrier=carrier.carrier_id, exc_info=error)
        return [], [f"{s.code}: {carrier.carrier_id} could not be rated" for s in services]
    by_code: dict[str, CarrierRate] = {}
    for rate in rates:
        by_code.setdefault(rate.service_code, rate)
    quotes, ineligible = [], []
    for service in services:
        found = by_code.get(service.code)
        if found is None:
            ineligible.append(f"{service.code}: {carrier.carrier_id} quoted no rate for it")
            continue
        try:
            quotes.append(domain.carrier_quote(
                shipment, origin, carrier, service, found.total,
                [(_charge_kind(c.name), c.amount) for c in found.charges],
                transit_days=found.transit_days, estimated_delivery=found.estimated_delivery))
        except domain.NotRated as error:
            ineligible.append(f"{service.code}: {error}")
    return quotes, ineligible


def _charge_kind(name: str) -> str:
    # The carrier's own charge names ("FUEL SURCHARGE") as a kind like ours ("fuel_surcharge").
    return "_".join(name.lower().split()) or "carrier"


async def _carrier_of(session: AsyncSession, service_code: str, path: str) -> str:
    carrier_id = await carriers_store.carrier_of_service(session, service_code)
    if carrier_id is None:
        raise InvalidArgument([FieldViolation(
            path, f"no carrier sells service {service_code!r}; create the carrier first")])
    return carrier_id


def _card_message(row: Row[Any]) -> shipping_pb2.RateCard:
    return convert.card_message(convert.card_from_row(row), row.create_time)
