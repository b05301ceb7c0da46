"""Webhooks in, over the gateway's real database in front of real orders and shipping
services (gRPC, PostgreSQL, NATS): a signed webhook reaches the service once however often
it is posted; a bad or stale signature, a malformed body or another partner's object is
refused and leaves nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fastapi import FastAPI
from gateway_webhooks_support import client_of, new_partner, signed
from google.type import dayofweek_pb2, timeofday_pb2
from oms.common.v1 import common_pb2
from oms.orders.v1 import orders_pb2, orders_pb2_grpc
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_gateway.app import MIGRATIONS, create_app
from oms_gateway.partners.domain import Kind
from oms_gateway.problems import PROBLEM_JSON
from oms_gateway.settings import GatewaySettings
from oms_gateway.tables import inbound_webhooks
from oms_orders.app import DEFINITION as ORDERS
from oms_orders.app import MIGRATIONS as ORDERS_MIGRATIONS
from oms_platform.migrations import upgrade
from oms_platform.service import Service
from oms_shipping.app import MIGRATIONS as SHIPPING_MIGRATIONS
from oms_shipping.app import definition as shipping_definition
from oms_shipping.settings import ShippingSettings
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

NODE = "node-webhooks"
LATE = timeofday_pb2.TimeOfDay(hours=23, minutes=59, seconds=59)
EVERY_DAY = list(range(1, 8))
SCHEMES = {"ups": shipping_pb2.TRACKING_SCHEME_UPS_1Z,
           "usps": shipping_pb2.TRACKING_SCHEME_MOD10}


@pytest.fixture(scope="module")
async def orders_service(database_factory: Callable[[str], str],
                         nats_url: str) -> AsyncIterator[Service]:
    async with running_service(ORDERS, ORDERS_MIGRATIONS, database_url=database_factory(
            "gw_hooks_in_orders"), nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def shipping_service(database_factory: Callable[[str], str],
                           nats_url: str) -> AsyncIterator[Service]:
    async with running_service(shipping_definition(ShippingSettings()), SHIPPING_MIGRATIONS,
                               database_url=database_factory("gw_hooks_in_shipping"),
                               nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def shipping(shipping_service: Service) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{shipping_service.bound_port}") as channel:
        stub = shipping_pb2_grpc.ShippingServiceStub(channel)
        for carrier_id, scheme in SCHEMES.items():
            await stub.CreateCarrier(shipping_pb2.CreateCarrierRequest(
                request_id=str(uuid.uuid4()), carrier=shipping_pb2.Carrier(
                    carrier_id=carrier_id, display_name=carrier_id.upper(),
                    mode=shipping_pb2.CARRIER_MODE_TABLE_RATE, tracking_scheme=scheme,
                    services=[shipping_pb2.CarrierService(
                        code=f"{carrier_id}_parcel", display_name="Parcel",
                        service_level=shipping_pb2.SERVICE_LEVEL_STANDARD, transit_days=2,
                        pickup_days=[dayofweek_pb2.DayOfWeek.Value(d) for d in (
                            "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY",
                            "SATURDAY", "SUNDAY")], cutoff_time=LATE)])))
            await stub.CreateRateCard(shipping_pb2.CreateRateCardRequest(
                request_id=str(uuid.uuid4()), rate_card_id=f"{carrier_id}-card",
                rate_card=shipping_pb2.RateCard(
                    service_code=f"{carrier_id}_parcel", currency_code="GBP",
                    zones=[shipping_pb2.Zone(zone="1", origin_country="GB",
                                             destination_country="GB")],
                    breaks=[shipping_pb2.WeightBreak(
                        zone="1", max_weight_grams=20000,
                        price=common_pb2.Money(currency_code="GBP", amount="4.20"))])))
        await stub.CreateOrigin(shipping_pb2.CreateOriginRequest(origin=shipping_pb2.Origin(
            node_id=NODE, time_zone="Europe/London", carriers=list(SCHEMES), cutoff_time=LATE,
            address=common_pb2.Address(organization="OMS", address_lines=["1 Dock Road"],
                                       locality="Hatfield", postal_code="AL10 9AA",
                                       region_code="GB"))))
        yield stub


@pytest.fixture(scope="module")
async def orders(orders_service: Service) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{orders_service.bound_port}") as channel:
        yield orders_pb2_grpc.OrdersServiceStub(channel)


@pytest.fixture(scope="module")
async def app(database_factory: Callable[[str], str], orders_service: Service,
              shipping_service: Service) -> AsyncIterator[FastAPI]:
    url = database_factory("gw_hooks_in")
    upgrade(MIGRATIONS, url)
    app = create_app(GatewaySettings(
        database_url=url, orders_target=f"127.0.0.1:{orders_service.bound_port}",
        shipping_target=f"127.0.0.1:{shipping_service.bound_port}"))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


async def label(shipping: Any, carrier: str) -> shipping_pb2.Label:
    return await shipping.CreateLabel(shipping_pb2.CreateLabelRequest(
        request_id=str(uuid.uuid4()), package=f"fulfilmentOrders/{uuid.uuid4()}/packages/1",
        orders=[f"orders/{uuid.uuid4()}"], node_id=NODE,
        destination=common_pb2.Address(recipient="Ada", address_lines=["12 Marylebone Road"],
                                       locality="London", postal_code="NW1 5LR",
                                       region_code="GB"),
        parcel=shipping_pb2.Parcel(weight=common_pb2.Weight(grams=900)),
        service_code=f"{carrier}_parcel"))


def scan(parcel: shipping_pb2.Label, code: str = "I", hours_ago: float = 1.0,
         carrier: str | None = None) -> dict[str, Any]:
    moment = datetime.now(UTC) - timedelta(hours=hours_ago)
    return {"carrier": carrier or parcel.carrier, "trackingNumber": parcel.tracking_number,
            "carrierCode": code, "eventTime": moment.isoformat().replace("+00:00", "Z"),
            "location": "Swindon"}


async def events_of(shipping: Any, parcel: shipping_pb2.Label) -> int:
    tracking = await shipping.GetTracking(shipping_pb2.GetTrackingRequest(
        tracking_number=parcel.tracking_number))
    return len(tracking.events)


async def ids_kept(engine: AsyncEngine, partner_id: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(inbound_webhooks).where(
            inbound_webhooks.c.partner_id == partner_id)))


def problem(reply: Any, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON
    return reply.json()  # type: ignore[no-any-return]


# --- tracking ------------------------------------------------------------------------------

async def test_a_signed_tracking_webhook_reaches_shipping_once_however_often_it_is_posted(
    app: FastAPI, engine: AsyncEngine, shipping: Any,
) -> None:
    partner, key, secret = await new_partner(engine, Kind.CARRIER, carriers=("ups",))
    parcel = await label(shipping, "ups")
    webhook_id = f"msg_{uuid.uuid4().hex}"
    async with client_of(app, key) as client:
        first = await client.post("/v1/webhooks/tracking", content=(sent := signed(
            secret, {"events": [scan(parcel)]}, webhook_id=webhook_id))[0], headers=sent[1])
        # The carrier's retry: the same id, signed again a moment later; then a copy that
        # differs (a later scan) under the same id, which must not reach shipping either.
        again = await client.post("/v1/webhooks/tracking", content=(sent := signed(
            secret, {"events": [scan(parcel)]}, webhook_id=webhook_id))[0], headers=sent[1])
        other = await client.post("/v1/webhooks/tracking", content=(sent := signed(
            secret, {"events": [scan(parcel, "OFD", 0.5)]}, webhook_id=webhook_id))[0],
            headers=sent[1])

    assert first.status_code == 200, first.text
    assert first.json() == {"recorded": 1}
    for replay in (again, other):
        assert replay.status_code == 200
        assert replay.content == first.content
        assert replay.headers["webhook-replayed"] == "true"
    assert await events_of(shipping, parcel) == 1
    assert await ids_kept(engine, partner.partner_id) == 1


async def test_a_bad_or_stale_signature_is_refused_and_keeps_nothing(
    app: FastAPI, engine: AsyncEngine, shipping: Any,
) -> None:
    partner, key, secret = await new_partner(engine, Kind.CARRIER, carriers=("ups",))
    _, _, someone_elses = await new_partner(engine, Kind.CARRIER, carriers=("ups",))
    parcel = await label(shipping, "ups")
    body = {"events": [scan(parcel)]}
    webhook_id = f"msg_{uuid.uuid4().hex}"
    async with client_of(app, key) as client:
        raw, headers = signed(someone_elses, body, webhook_id=webhook_id)
        forged = await client.post("/v1/webhooks/tracking", content=raw, headers=headers)
        raw, headers = signed(secret, body, webhook_id=webhook_id)
        tampered = await client.post("/v1/webhooks/tracking", content=raw.replace(
            b"Swindon", b"Swansea"), headers=headers)
        garbled = await client.post("/v1/webhooks/tracking", content=raw, headers={
            **headers, "webhook-signature": "v1 not-base64"})
        raw, headers = signed(secret, body, webhook_id=webhook_id,
                              at=datetime.now(UTC) - timedelta(minutes=6))
        stale = await client.post("/v1/webhooks/tracking", content=raw, headers=headers)
        assert await ids_kept(engine, partner.partner_id) == 0
        assert await events_of(shipping, parcel) == 0
        # The id was never taken: the genuine webhook goes through.
        raw, headers = signed(secret, body, webhook_id=webhook_id)
        genuine = await client.post("/v1/webhooks/tracking", content=raw, headers=headers)

    for refused in (forged, tampered, garbled):
        assert problem(refused, 401)["errors"][0]["field"] == "webhook-signature"
    assert problem(stale, 400)["errors"][0]["field"] == "webhook-timestamp"
    assert genuine.status_code == 200 and genuine.json() == {"recorded": 1}


async def test_a_malformed_body_is_a_400_naming_its_json_fields_and_keeps_nothing(
    app: FastAPI, engine: AsyncEngine, shipping: Any,
) -> None:
    partner, key, secret = await new_partner(engine, Kind.CARRIER, carriers=("ups",))
    parcel = await label(shipping, "ups")
    unparsable = {"events": [{**scan(parcel), "eventTime": "yesterday", "weight": 3}]}
    invalid = {"events": [{**scan(parcel), "trackingNumber": ""}]}
    async with client_of(app, key) as client:
        first = await client.post("/v1/webhooks/tracking", content=(
            sent := signed(secret, unparsable))[0], headers=sent[1])
        second = await client.post("/v1/webhooks/tracking", content=(
            sent := signed(secret, invalid))[0], headers=sent[1])
        third = await client.post("/v1/webhooks/tracking", content=(
            sent := signed(secret, b"[1, 2"))[0], headers=sent[1])
    assert {e["field"] for e in problem(first, 400)["errors"]} == {
        "events[0].eventTime", "events[0].weight"}
    assert {e["field"] for e in problem(second, 400)["errors"]} == {"events[0].trackingNumber"}
    problem(third, 400)
    assert await ids_kept(engine, partner.partner_id) == 0
    assert await events_of(shipping, parcel) == 0


async def test_a_carrier_posts_only_for_its_own_carriers_shipments(
    app: FastAPI, engine: AsyncEngine, shipping: Any,
) -> None:
    partner, key, secret = await new_partner(engine, Kind.CARRIER, carriers=("ups",))
    theirs = await label(shipping, "usps")
    async with client_of(app, key) as client:
        as_other = await client.post("/v1/webhooks/tracking", content=(
            sent := signed(secret, {"events": [scan(theirs)]}))[0], headers=sent[1])
        # Naming its own carrier with another carrier's tracking number finds nothing.
        as_self = await client.post("/v1/webhooks/tracking", content=(
            sent := signed(secret, {"events": [scan(theirs, carrier="ups")]}))[0],
            headers=sent[1])
    assert problem(as_other, 404)["errors"] == [
        {"field": "events[0].carrier", "detail": "not a carrier of this partner"}]
    problem(as_self, 404)
    assert await events_of(shipping, theirs) == 0
    assert await ids_kept(engine, partner.partner_id) == 0


async def test_credentials_and_scope_come_before_the_signature(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    _, key, secret = await new_partner(engine, Kind.CARRIER, carriers=("ups",),
                                       scopes=frozenset({"webhooks:read"}))
    raw, headers = signed(secret, {"events": []})
    async with client_of(app) as anonymous:
        problem(await anonymous.post("/v1/webhooks/tracking", content=raw, headers=headers),
                401)
    async with client_of(app, key) as client:
        assert problem(await client.post("/v1/webhooks/tracking", content=raw,
                                         headers=headers), 403)["scope"] == "shipments:write"


# --- payments ------------------------------------------------------------------------------

async def new_order(orders: Any, channel: str) -> orders_pb2.Order:
    return await orders.CreateOrder(orders_pb2.CreateOrderRequest(
        request_id=str(uuid.uuid4()), order=orders_pb2.Order(
            channel=channel, external_order_id=uuid.uuid4().hex,
            shipping_address=common_pb2.Address(
                recipient="Ada", address_lines=["1 Market St"], locality="San Francisco",
                administrative_area="CA", postal_code="94105", region_code="US"),
            lines=[orders_pb2.OrderLine(sku="TSHIRT-BLK-M", quantity=2, unit_price=common_pb2.Money(
                currency_code="USD", amount="19.99"))])))


def payment(order: orders_pb2.Order, kind: str, transaction: str,
            amount: str = "39.98") -> dict[str, Any]:
    return {"name": order.name, "payment": {
        "transactionId": transaction, "kind": kind,
        "amount": {"currencyCode": "USD", "amount": amount}}}


async def test_a_payment_webhook_reaches_orders_once_and_only_for_the_providers_payments(
    app: FastAPI, engine: AsyncEngine, orders: Any,
) -> None:
    channel = f"shop-{uuid.uuid4().hex[:8]}"
    provider, key, secret = await new_partner(engine, Kind.PAYMENT_PROVIDER, channels=(channel,))
    _, rival_key, rival_secret = await new_partner(engine, Kind.PAYMENT_PROVIDER,
                                                   channels=(channel,))
    _, stranger_key, stranger_secret = await new_partner(engine, Kind.PAYMENT_PROVIDER,
                                                         channels=("elsewhere",))
    order = await new_order(orders, channel)
    capture = payment(order, "PAYMENT_KIND_CAPTURE", "pi_1")
    webhook_id = f"msg_{uuid.uuid4().hex}"
    async with client_of(app, key) as client:
        first = await client.post("/v1/webhooks/payments", content=(
            sent := signed(secret, capture, webhook_id=webhook_id))[0], headers=sent[1])
        again = await client.post("/v1/webhooks/payments", content=(
            sent := signed(secret, capture, webhook_id=webhook_id))[0], headers=sent[1])
        named_other = await client.post("/v1/webhooks/payments", content=(sent := signed(
            secret, {**capture, "payment": {**capture["payment"], "provider": "stripe"}}))[0],
            headers=sent[1])
    async with client_of(app, rival_key) as client:
        rival_refund = await client.post("/v1/webhooks/payments", content=(sent := signed(
            rival_secret, payment(order, "PAYMENT_KIND_REFUND", "re_9", "5.00")))[0],
            headers=sent[1])
        rival_same_id = await client.post("/v1/webhooks/payments", content=(sent := signed(
            rival_secret, payment(order, "PAYMENT_KIND_CAPTURE", "pi_1")))[0],
            headers=sent[1])
    async with client_of(app, stranger_key) as client:
        stranger = await client.post("/v1/webhooks/payments", content=(sent := signed(
            stranger_secret, payment(order, "PAYMENT_KIND_CAPTURE", "pi_2")))[0],
            headers=sent[1])
    async with client_of(app, key) as client:
        refund = await client.post("/v1/webhooks/payments", content=(sent := signed(
            secret, payment(order, "PAYMENT_KIND_REFUND", "re_1", "5.00")))[0],
            headers=sent[1])

    assert first.status_code == 200, first.text
    assert again.content == first.content and again.headers["webhook-replayed"] == "true"
    assert {e["field"] for e in problem(named_other, 400)["errors"]} == {"payment.provider"}
    for refused in (rival_refund, rival_same_id, stranger):
        problem(refused, 404)
    assert refund.status_code == 200, refund.text
    now = await orders.GetOrder(orders_pb2.GetOrderRequest(name=order.name))
    assert [(p.transaction_id, p.provider) for p in now.payments] == [
        ("pi_1", provider.partner_id), ("re_1", provider.partner_id)]


# --- the operators' CLI ---------------------------------------------------------------------

async def test_the_cli_binds_a_carrier_and_issues_signing_secrets_with_an_overlap(
    app: FastAPI, engine: AsyncEngine, shipping: Any, capsys: Any, monkeypatch: Any,
) -> None:
    """As ``make run`` makes its demo partners: created with ``--carrier``, given a secret
    by ``webhook-secret`` (printed once), which signs the carrier's webhooks; a second secret
    leaves the first valid for the overlap (here none: at once replaced)."""
    import asyncio
    import json

    from oms_gateway.cli import main

    monkeypatch.setenv("OMS_DATABASE_URL", app.state.settings.database_url)
    partner_id = f"cli-{uuid.uuid4().hex[:8]}"

    def run(*argv: str) -> dict[str, Any]:
        with pytest.raises(SystemExit) as exit_:
            main(["partners", *argv])
        assert exit_.value.code == 0
        return json.loads(capsys.readouterr().out.splitlines()[-1])  # type: ignore[no-any-return]

    created = await asyncio.to_thread(run, "create", "--id", partner_id, "--name", "UPS",
                                      "--kind", "carrier", "--carrier", "ups")
    assert created["carriers"] == ["ups"]
    first = (await asyncio.to_thread(run, "webhook-secret", partner_id))["webhookSecret"]
    second = (await asyncio.to_thread(run, "webhook-secret", partner_id, "--overlap-hours",
                                      "0"))["webhookSecret"]
    parcel = await label(shipping, "ups")
    async with client_of(app, created["apiKey"]) as client:
        old = await client.post("/v1/webhooks/tracking", content=(
            sent := signed(first, {"events": [scan(parcel)]}))[0], headers=sent[1])
        new = await client.post("/v1/webhooks/tracking", content=(
            sent := signed(second, {"events": [scan(parcel)]}))[0], headers=sent[1])
    problem(old, 401)
    assert new.status_code == 200, new.text
