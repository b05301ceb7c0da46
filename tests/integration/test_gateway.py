"""The gateway in process over its real PostgreSQL database, in front of a real orders
service (gRPC, PostgreSQL, NATS): partners' credentials, scopes and isolation, stored
idempotent answers, the audit log, and its problem answers."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from fastapi import FastAPI
from gateway_contract import Contract
from oms.inventory.v1 import inventory_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.servers import free_port
from oms_devtools.testkit import add_node, add_sku, eventually
from oms_gateway.app import MIGRATIONS, create_app
from oms_gateway.idempotency import store as idempotency_store
from oms_gateway.idempotency.domain import fingerprint
from oms_gateway.partners import store as partners
from oms_gateway.partners.domain import SCOPES, Kind, Partner
from oms_gateway.problems import PROBLEM_JSON
from oms_gateway.settings import GatewaySettings
from oms_gateway.tables import audit_log, idempotency_keys, webhook_deliveries
from oms_gateway.webhooks.wiring import OPERATIONS as WEBHOOK_OPERATIONS
from oms_inventory.app import MIGRATIONS as INVENTORY_MIGRATIONS
from oms_inventory.app import definition as inventory_definition
from oms_inventory.settings import InventorySettings
from oms_orders.app import DEFINITION as ORDERS
from oms_orders.app import MIGRATIONS as ORDERS_MIGRATIONS
from oms_platform.migrations import upgrade
from oms_platform.service import Service
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture(scope="module")
def gateway_database(database_factory: Callable[[str], str]) -> str:
    url = database_factory("gateway")
    upgrade(MIGRATIONS, url)
    return url


@pytest.fixture(scope="module")
async def orders_service(database_factory: Callable[[str], str],
                         nats_url: str) -> AsyncIterator[Service]:
    async with running_service(ORDERS, ORDERS_MIGRATIONS, database_url=database_factory(
            "gateway_orders"), nats_url=nats_url) as service:
        yield service


async def _serving(settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def inventory_service(database_factory: Callable[[str], str],
                            nats_url: str) -> AsyncIterator[Service]:
    async with running_service(inventory_definition(InventorySettings()),
                               INVENTORY_MIGRATIONS, database_url=database_factory(
                                   "gateway_inventory"), nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def app(gateway_database: str, orders_service: Service,
              inventory_service: Service) -> AsyncIterator[FastAPI]:
    async for serving in _serving(GatewaySettings(
            database_url=gateway_database, max_body_bytes=64 * 1024,
            orders_target=f"127.0.0.1:{orders_service.bound_port}",
            inventory_target=f"127.0.0.1:{inventory_service.bound_port}",
            # The generated requests come faster than a partner's default quota allows; the
            # limits have tests of their own (test_gateway_limits.py).
            rate_limits={"sales_channel": "100000/minute"})):
        yield serving


@pytest.fixture(scope="module")
def engine(app: FastAPI) -> AsyncEngine:
    return app.state.engine  # type: ignore[no-any-return]


def client_of(app: FastAPI, key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # Every answer the tests receive is held to the OpenAPI document.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://gateway", headers=headers,
                             event_hooks={"response": [Contract(app.openapi()).hook]})


async def new_partner(engine: AsyncEngine, kind: Kind = Kind.SALES_CHANNEL, *,
                      channels: tuple[str, ...] | None = None,
                      scopes: frozenset[str] = SCOPES) -> tuple[Partner, str]:
    partner_id = f"p-{uuid.uuid4().hex[:12]}"
    if channels is None:
        channels = (f"shop-{uuid.uuid4().hex[:8]}",) if kind is Kind.SALES_CHANNEL else ()
    partner = Partner(partner_id=partner_id, kind=kind, name=partner_id,
                      channels=frozenset(channels), scopes=scopes)
    return partner, (await partners.create(engine, partner)).secret


def order_body(channel: str, external: str | None = None) -> dict[str, Any]:
    return {
        "channel": channel, "externalOrderId": external or uuid.uuid4().hex,
        "shippingAddress": {"recipient": "Ada", "addressLines": ["1 Market St"],
                            "locality": "San Francisco", "administrativeArea": "CA",
                            "postalCode": "94105", "regionCode": "US"},
        "lines": [{"sku": "TSHIRT-BLK-M", "quantity": 1,
                   "unitPrice": {"currencyCode": "USD", "amount": "19.99"}}],
        "paymentStatus": "PAYMENT_STATUS_PENDING",
    }


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def assert_problem(reply: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM_JSON
    problem = reply.json()
    assert problem["status"] == status and problem["type"].endswith(f"/{kind}"), problem
    return problem  # type: ignore[no-any-return]


async def orders_count(service: Service, external: str) -> int:
    assert service.runtime is not None
    async with service.runtime.engine.connect() as conn:
        return int(await conn.scalar(text(
            "SELECT count(*) FROM orders WHERE external_order_id = :e"), {"e": external}))


async def stored_keys(engine: AsyncEngine, partner: Partner) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(idempotency_keys).where(
            idempotency_keys.c.partner_id == partner.partner_id)))


# --- idempotency -------------------------------------------------------------------------

async def test_a_replay_is_the_first_answer_byte_for_byte_and_creates_nothing_more(
    app: FastAPI, engine: AsyncEngine, orders_service: Service,
) -> None:
    partner, secret = await new_partner(engine)
    body = order_body(next(iter(partner.channels)))
    headers = key()
    async with client_of(app, secret) as client:
        first = await client.post("/v1/orders", json=body, headers=headers)
        # The same request, its JSON keys in another order and spaced out: still the same.
        reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
        again = await client.post("/v1/orders", content=reordered,
                                  headers={**headers, "content-type": "application/json"})
        await client.post(f"/v1/{first.json()['name']}:cancel", json={"reason": "test"},
                          headers=key())
        third = await client.post("/v1/orders", json=body, headers=headers)

    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    for replay in (again, third):
        assert replay.status_code == 201
        assert replay.content == first.content, "the stored answer, not the order as it is now"
        assert replay.headers["location"] == first.headers["location"]
        assert replay.headers["content-type"] == first.headers["content-type"]
        assert replay.headers["idempotent-replayed"] == "true"
    assert await orders_count(orders_service, body["externalOrderId"]) == 1


async def test_the_same_key_with_another_body_is_a_422_and_changes_nothing(
    app: FastAPI, engine: AsyncEngine, orders_service: Service,
) -> None:
    partner, secret = await new_partner(engine)
    channel = next(iter(partner.channels))
    headers = key()
    async with client_of(app, secret) as client:
        first = await client.post("/v1/orders", json=order_body(channel), headers=headers)
        other = order_body(channel)
        reused = await client.post("/v1/orders", json=other, headers=headers)
        elsewhere = await client.post(f"/v1/{first.json()['name']}:cancel", json={},
                                      headers=headers)

    assert first.status_code == 201
    assert_problem(reused, 422, "idempotency-key-reused")
    assert_problem(elsewhere, 422, "idempotency-key-reused")
    assert await orders_count(orders_service, other["externalOrderId"]) == 0


async def test_a_key_in_flight_is_a_409_and_a_lapsed_lease_is_taken_over(
    app: FastAPI, engine: AsyncEngine, orders_service: Service,
) -> None:
    partner, secret = await new_partner(engine)
    body = order_body(next(iter(partner.channels)))
    headers = key()
    raw = json.dumps(body).encode()
    # Another replica holds the key: its request is under way.
    held = await idempotency_store.claim(
        engine, partner.partner_id, headers["Idempotency-Key"],
        fingerprint("POST", "/v1/orders", b"", raw), lease=timedelta(minutes=5),
        ttl=timedelta(hours=1))
    assert held is not None
    async with client_of(app, secret) as client:
        busy = await client.post("/v1/orders", content=raw, headers={
            **headers, "content-type": "application/json"})
        problem = assert_problem(busy, 409, "idempotency-key-in-flight")
        assert busy.headers["retry-after"] == "1" and problem["detail"]
        assert await orders_count(orders_service, body["externalOrderId"]) == 0

        # That replica died: once its lease lapses, the retry runs the request itself.
        async with engine.begin() as conn:
            await conn.execute(update(idempotency_keys).where(
                idempotency_keys.c.partner_id == partner.partner_id).values(
                locked_until=func.now() - timedelta(seconds=1)))
        taken = await client.post("/v1/orders", content=raw, headers={
            **headers, "content-type": "application/json"})
        assert taken.status_code == 201, taken.text
        assert not await idempotency_store.complete(
            engine, partner.partner_id, headers["Idempotency-Key"], held, status=500,
            headers={}, body=b"late"), "the first holder can no longer store an answer"
        replay = await client.post("/v1/orders", content=raw, headers={
            **headers, "content-type": "application/json"})
    assert replay.content == taken.content


async def test_concurrent_requests_with_one_key_run_it_once(
    app: FastAPI, engine: AsyncEngine, orders_service: Service,
) -> None:
    partner, secret = await new_partner(engine)
    body = order_body(next(iter(partner.channels)))
    headers = key()
    async with client_of(app, secret) as client:
        replies = await asyncio.gather(*(client.post("/v1/orders", json=body, headers=headers)
                                         for _ in range(8)))
    statuses = sorted(r.status_code for r in replies)
    assert set(statuses) <= {201, 409} and 201 in statuses, statuses
    assert len({r.content for r in replies if r.status_code == 201}) == 1
    assert await orders_count(orders_service, body["externalOrderId"]) == 1


async def test_keys_are_scoped_to_the_partner(app: FastAPI, engine: AsyncEngine) -> None:
    (one, one_key), (two, two_key) = await new_partner(engine), await new_partner(engine)
    headers = key()
    async with client_of(app, one_key) as first, client_of(app, two_key) as second:
        a = await first.post("/v1/orders", json=order_body(next(iter(one.channels))),
                             headers=headers)
        b = await second.post("/v1/orders", json=order_body(next(iter(two.channels))),
                              headers=headers)
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["name"] != b.json()["name"]


async def test_every_post_needs_a_key_and_refusals_before_the_service_store_nothing(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine)
    body = order_body(next(iter(partner.channels)))
    headers = key()
    async with client_of(app, secret) as client:
        missing = await client.post("/v1/orders", json=body)
        bad_key = await client.post("/v1/orders", json=body, headers={"Idempotency-Key": "a b"})
        not_an_object = await client.post("/v1/orders", json=[1], headers=headers)
        other_channel = await client.post("/v1/orders", json=order_body("not-mine"),
                                          headers=headers)
        assert await stored_keys(engine, partner) == 0
        fixed = await client.post("/v1/orders", json=body, headers=headers)

    problem = assert_problem(missing, 400, "invalid-argument")
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert_problem(bad_key, 400, "invalid-argument")
    assert_problem(not_an_object, 400, "invalid-argument")
    problem = assert_problem(other_channel, 403, "permission-denied")
    assert problem["errors"] == [{"field": "channel", "detail": "not a channel of this partner"}]
    assert fixed.status_code == 201, "the key was free for the corrected request"


async def test_an_expired_key_may_be_used_again_and_the_sweep_deletes_it(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine)
    channel = next(iter(partner.channels))
    headers = key()
    async with client_of(app, secret) as client:
        first = await client.post("/v1/orders", json=order_body(channel), headers=headers)
        async with engine.begin() as conn:
            await conn.execute(update(idempotency_keys).where(
                idempotency_keys.c.partner_id == partner.partner_id).values(
                expires_at=func.now() - timedelta(seconds=1)))
        second = await client.post("/v1/orders", json=order_body(channel), headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["name"] != second.json()["name"]
    async with engine.begin() as conn:
        await conn.execute(update(idempotency_keys).where(
            idempotency_keys.c.partner_id == partner.partner_id).values(
            expires_at=func.now() - timedelta(seconds=1)))
    assert await idempotency_store.sweep(engine) >= 1
    assert await stored_keys(engine, partner) == 0


async def test_a_503_is_not_stored_so_the_retry_runs(gateway_database: str) -> None:
    async for app in _serving(GatewaySettings(database_url=gateway_database,
                                              orders_target=f"127.0.0.1:{free_port()}",
                                              request_timeout_seconds=2)):
        partner, secret = await new_partner(app.state.engine)
        async with client_of(app, secret) as client:
            reply = await client.post("/v1/orders", json=order_body(next(iter(
                partner.channels))), headers=key())
        assert_problem(reply, 503, "unavailable")
        assert await stored_keys(app.state.engine, partner) == 0


async def test_an_oversize_body_is_a_413(app: FastAPI, engine: AsyncEngine) -> None:
    _, secret = await new_partner(engine)
    async with client_of(app, secret) as client:
        reply = await client.post("/v1/orders", content=b"{" + b" " * 70_000 + b"}",
                                  headers={**key(), "content-type": "application/json"})
    assert_problem(reply, 413, "content-too-large")


# --- credentials, scopes, isolation -------------------------------------------------------

OPERATIONS = [  # method, path (with {id}), scope, body
    ("GET", "/v1/orders/{id}", "orders:read", None),
    ("POST", "/v1/orders/{id}/payments", "payments:write",
     {"transactionId": "t-1", "kind": "PAYMENT_KIND_CAPTURE",
      "amount": {"currencyCode": "USD", "amount": "19.99"}, "provider": "stripe"}),
    ("POST", "/v1/orders/{id}:cancel", "orders:write", {"reason": "test"}),
]
CREATE = ("POST", "/v1/orders", "orders:write")
LIST = ("GET", "/v1/orders", "orders:read")
# Operations on none of another partner's objects: there is no id to check, only 401 and 403.
UNOWNED = [LIST, ("POST", "/v1/orders:import", "orders:write"),
           ("GET", "/v1/orders:export", "orders:read"),
           ("GET", "/v1/stock/{id}", "stock:read"), ("GET", "/v1/stock", "stock:read")]


def test_the_matrix_covers_every_operation(app: FastAPI) -> None:
    documented = {(method.upper(), re.sub(r"\{[^}]+\}", "{id}", path))
                  for path, item in app.openapi()["paths"].items() for method in item
                  if path != "/oauth/token"  # open: it takes the credentials
                  # with a matrix of their own (test_gateway_webhooks_*)
                  and (method.upper(), path) not in WEBHOOK_OPERATIONS}
    assert documented == {(m, p) for m, p, _, _ in OPERATIONS} | {CREATE[:2]} | {
        operation[:2] for operation in UNOWNED}


async def _call(client: httpx.AsyncClient, method: str, path: str, body: Any) -> httpx.Response:
    headers = key() if method == "POST" else {}
    return await client.request(method, path, json=body, headers=headers)


async def test_another_partners_order_is_404_on_every_operation(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    owner, owner_key = await new_partner(engine)
    _, other_key = await new_partner(engine)
    _, provider_key = await new_partner(engine, Kind.PAYMENT_PROVIDER, channels=("elsewhere",))
    async with client_of(app, owner_key) as client:
        created = await client.post("/v1/orders", json=order_body(next(iter(owner.channels))),
                                    headers=key())
    order_id = created.json()["name"].removeprefix("orders/")
    for secret in (other_key, provider_key):
        async with client_of(app, secret) as client:
            for method, path, _, body in OPERATIONS:
                reply = await _call(client, method, path.format(id=order_id), body)
                problem = assert_problem(reply, 404, "not-found")
                assert problem["detail"] == f"no order {order_id}", "as if it did not exist"
        async with client_of(app, secret) as client:
            listed = await client.get("/v1/orders")
        assert order_id not in listed.text, "not in another partner's list either"
    async with client_of(app, owner_key) as client:
        mine = await client.get(f"/v1/orders/{order_id}")
        listed = await client.get("/v1/orders")
    assert mine.status_code == 200 and mine.json()["status"] != "ORDER_STATUS_CANCELLED"
    assert [o["name"] for o in listed.json()["orders"]] == [f"orders/{order_id}"]


async def test_without_a_valid_key_every_operation_is_401(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine)
    await partners.revoke(engine, partner.partner_id)
    order_id = uuid.uuid4()
    for credentials in (None, "oms_000000000000_" + "x" * 43, "not-a-key", secret):
        async with client_of(app, credentials) as client:
            for method, path, _, body in [*OPERATIONS, (*CREATE, order_body("x")),
                                          *[(*operation, None) for operation in UNOWNED]]:
                reply = await _call(client, method, path.format(id=order_id), body)
                assert_problem(reply, 401, "unauthenticated")
                assert reply.headers["www-authenticate"].startswith("Bearer")
            assert_problem(await client.get("/v2/nothing"), 401, "unauthenticated")
    async with client_of(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


async def test_a_key_lacking_the_scope_is_403_on_every_operation(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    for method, path, scope, body in [*OPERATIONS, (*CREATE, None),
                                      *[(*operation, None) for operation in UNOWNED]]:
        partner, secret = await new_partner(engine, scopes=SCOPES - {scope})
        if (method, path) == CREATE[:2]:
            body = order_body(next(iter(partner.channels)))
        async with client_of(app, secret) as client:
            reply = await _call(client, method, path.format(id=uuid.uuid4()), body)
        assert assert_problem(reply, 403, "permission-denied")["scope"] == scope


async def test_a_rotated_key_works_until_its_overlap_ends_and_revocation_is_immediate(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, old = await new_partner(engine)
    new = (await partners.rotate_key(engine, partner.partner_id, timedelta(hours=1))).secret
    probe = f"/v1/orders/{uuid.uuid4()}"
    for secret in (old, new):
        async with client_of(app, secret) as client:
            assert (await client.get(probe)).status_code == 404
    newest = (await partners.rotate_key(engine, partner.partner_id, timedelta(0))).secret
    for secret, status in ((old, 401), (new, 401), (newest, 404)):
        async with client_of(app, secret) as client:
            assert (await client.get(probe)).status_code == status
    prefix = newest.split("_")[1]
    assert await partners.revoke(engine, partner.partner_id, prefix) == 1
    async with client_of(app, newest) as client:
        assert (await client.get(probe)).status_code == 401


async def test_the_audit_log_records_who_did_what(app: FastAPI, engine: AsyncEngine) -> None:
    partner, secret = await new_partner(engine, scopes=frozenset({"orders:write"}))
    async with client_of(app, secret) as client:
        created = await client.post("/v1/orders", json=order_body(next(iter(
            partner.channels))), headers=key())
        order_id = created.json()["name"].removeprefix("orders/")
        await client.get(f"/v1/orders/{order_id}")
    async with engine.connect() as conn:
        rows = (await conn.execute(select(audit_log).where(
            audit_log.c.partner_id == partner.partner_id).order_by(audit_log.c.id))).all()
    assert [(r.method, r.path, r.resource_id, r.status) for r in rows] == [
        ("POST", "/v1/orders", order_id, 201),
        ("GET", f"/v1/orders/{order_id}", order_id, 403),
    ]
    assert all(r.at is not None for r in rows)


def test_the_migrated_schema_matches_the_metadata(gateway_database: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from oms_gateway.tables import metadata
    from sqlalchemy import create_engine

    sync = create_engine(gateway_database)
    try:
        with sync.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True})
            assert list(compare_metadata(context, metadata)) == []
    finally:
        sync.dispose()


# --- errors name the partner's JSON fields -------------------------------------------------

def _fields(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem["errors"]}


@pytest.mark.parametrize(("change", "fields"), [
    (lambda b: b["lines"][0]["unitPrice"].update(currencyCode="usd"),
     {"lines[0].unitPrice.currencyCode"}),
    (lambda b: (b["lines"][0].update(quantity=0), b["shippingAddress"].update(regionCode="XX"),
                b.update(externalOrderId="")),
     {"lines[0].quantity", "shippingAddress.regionCode", "externalOrderId"}),
    (lambda b: (b["lines"].append({**b["lines"][0], "unitPrice": {"currencyCode": "EUR",
                                                                  "amount": "1"}}),
                b["shippingAddress"].update(addressLines=[""], postalCode="")),
     {"lines[1].unitPrice.currencyCode", "shippingAddress.addressLines[0]",
      "shippingAddress.postalCode"}),
    (lambda b: b["lines"][0]["unitPrice"].update(amount="-1.00"),
     {"lines[0].unitPrice.amount"}),
], ids=["currency", "several", "second-line-and-address", "negative-price"])
async def test_the_services_violations_name_the_fields_of_the_partners_body(
    app: FastAPI, engine: AsyncEngine, change: Callable[[dict[str, Any]], Any],
    fields: set[str],
) -> None:
    partner, secret = await new_partner(engine)
    body = order_body(next(iter(partner.channels)))
    change(body)
    async with client_of(app, secret) as client:
        reply = await client.post("/v1/orders", json=body, headers=key())
    problem = assert_problem(reply, 400, "invalid-argument")
    assert _fields(problem) == fields, problem
    assert all(e["detail"] for e in problem["errors"])


@pytest.mark.parametrize(("change", "fields"), [
    (lambda b: b["lines"][0].update(quantity="two"), {"lines[0].quantity"}),
    (lambda b: (b.update(serviceLevel="SERVICE_LEVEL_WARP", giftWrap=True),
                b["lines"][0]["unitPrice"].update(amount=19.99)),
     {"serviceLevel", "giftWrap", "lines[0].unitPrice.amount"}),
    (lambda b: b.update(orderTime="yesterday", shippingAddress="1 Market St"),
     {"orderTime", "shippingAddress"}),
], ids=["quantity", "enum-unknown-float-money", "time-and-object"])
async def test_a_body_that_does_not_parse_names_every_bad_field_and_stores_nothing(
    app: FastAPI, engine: AsyncEngine, orders_service: Service,
    change: Callable[[dict[str, Any]], Any], fields: set[str],
) -> None:
    partner, secret = await new_partner(engine)
    body = order_body(next(iter(partner.channels)))
    change(body)
    async with client_of(app, secret) as client:
        reply = await client.post("/v1/orders", json=body, headers=key())
    problem = assert_problem(reply, 400, "invalid-argument")
    assert _fields(problem) == fields, problem
    assert not any(internal in problem["detail"] for internal in (
        "oms.orders", "oms.common", "Order.", "Failed to parse")), "no internal names"
    assert await stored_keys(engine, partner) == 0
    assert await orders_count(orders_service, body["externalOrderId"]) == 0


async def test_payment_and_cancel_violations_name_their_bodies_fields(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine)
    async with client_of(app, secret) as client:
        created = await client.post("/v1/orders", json=order_body(next(iter(
            partner.channels))), headers=key())
        order_id = created.json()["name"].removeprefix("orders/")
        payment = await client.post(f"/v1/orders/{order_id}/payments", headers=key(), json={
            "transactionId": "", "kind": "PAYMENT_KIND_CAPTURE",
            "amount": {"currencyCode": "usd", "amount": "1"}})
        cancel = await client.post(f"/v1/orders/{order_id}:cancel", headers=key(), json={
            "reason": "test", "lines": [{"lineId": "no-such-line", "quantity": 1}]})
        unparsed = await client.post(f"/v1/orders/{order_id}:cancel", headers=key(), json={
            "lines": [{"lineId": "1", "quantity": "all"}]})
    assert _fields(assert_problem(payment, 400, "invalid-argument")) == {
        "transactionId", "amount.currencyCode"}
    assert _fields(assert_problem(cancel, 400, "invalid-argument")) == {"lines[0].lineId"}
    assert _fields(assert_problem(unparsed, 400, "invalid-argument")) == {"lines[0].quantity"}


# --- the OpenAPI document ------------------------------------------------------------------

async def test_the_documents_examples_work_in_turn_on_the_demo_channel(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    document = app.openapi()

    def example(path: str) -> Any:
        media = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        return media["examples"]["demo"]["value"]

    order = example("/v1/orders")
    _, secret = await new_partner(engine, channels=(order["channel"],))
    async with client_of(app, secret) as client:
        created = await client.post("/v1/orders", json=order, headers=key())
        assert created.status_code == 201, created.text
        order_id = created.json()["name"].removeprefix("orders/")
        paid = await client.post(f"/v1/orders/{order_id}/payments",
                                 json=example("/v1/orders/{order_id}/payments"), headers=key())
        cancelled = await client.post(f"/v1/orders/{order_id}:cancel",
                                      json=example("/v1/orders/{order_id}:cancel"),
                                      headers=key())
    assert paid.status_code == 200, paid.text
    assert cancelled.status_code == 200, cancelled.text
    line = cancelled.json()["lines"][0]
    assert line["cancelledQuantity"] == 1


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app over real HTTP on a port of its own (its lifespan is the module's)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        await task


# Per operation: requests that fit the document, and requests that break it on purpose (a
# wrong type, a missing field, a header off its pattern), which must be refused as documented.
EXAMPLES = {"positive": 70, "negative": 30}
# The webhook routes' bodies are small and their refusals few: fewer cases keep the run short.
WEBHOOK_EXAMPLES = {"positive": 25, "negative": 10}


@pytest.mark.timeout(600)  # 100 requests per order operation, 35 per webhook one
async def test_generated_requests_never_meet_a_5xx_and_every_answer_conforms(
    app: FastAPI, engine: AsyncEngine, served: str, inventory_service: Service,
) -> None:
    """Schemathesis generates requests from the document (100 per order operation, 35 per
    webhook one, fitting it and not); every answer must be documented, of the documented
    content type, headers and schema, and none a 5xx. Seeded (derandomized), so a failure
    repeats."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    document = app.openapi()
    _, secret = await new_partner(engine, channels=("shopify-demo",))
    async with client_of(app, secret) as client:
        created = await client.post("/v1/orders", json=order_body("shopify-demo"),
                                    headers=key())
    order_id = created.json()["name"].removeprefix("orders/")
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{inventory_service.bound_port}") as channel:
        inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
        sku = await add_sku(inventory, {await add_node(inventory): 5})
    # The webhook routes as a partner of their own: the document's one example
    # Idempotency-Key, used by every POST's example, is then not one partner's for two bodies.
    _, hooks_secret = await new_partner(engine, channels=("shopify-demo",))
    fixed_ids = {"order_id": order_id, "sku": sku,
                 **await _webhook_ids(app, engine, hooks_secret)}
    schema = schemathesis.openapi.from_dict(document)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance]
    answered: dict[str, set[int]] = {}

    def run(operation: Any, mode: str) -> None:
        # A real order, so that payments and cancellations reach the service; a real SKU;
        # real webhook endpoints (one to delete, one to read) and a delivery to replay.
        fixed = {name: value for name, value in fixed_ids.items()
                 if f"{{{name.split(':')[0]}}}" in operation.path
                 and (":" not in name or operation.method.upper() == name.split(":")[1])}
        fixed = {name.split(":")[0]: value for name, value in fixed.items()} or None

        webhook = (operation.method.upper(), operation.path) in WEBHOOK_OPERATIONS
        examples = WEBHOOK_EXAMPLES if webhook else EXAMPLES
        caller = hooks_secret if webhook else secret

        @given(case=operation.as_strategy(GenerationMode(mode), path_parameters=fixed))
        @settings(max_examples=examples[mode], deadline=None, database=None,
                  derandomize=True, suppress_health_check=list(HealthCheck))
        def exercise(case: Any) -> None:
            response = case.call(base_url=served, headers={"Authorization": f"Bearer {caller}"},
                                 timeout=15)
            answered.setdefault(operation.label, set()).add(response.status_code)
            case.validate_response(response, checks=checks)

        exercise()

    def run_all() -> None:
        for result in schema.get_all_operations():
            for mode in EXAMPLES:
                run(result.ok(), mode)

    await asyncio.to_thread(run_all)
    assert len(answered) == sum(len(item) for item in document["paths"].values()), answered
    for label, statuses in answered.items():
        # Generated client ids are nobody's; a generated string is no CSV file of orders;
        # generated webhooks are signed by nobody.
        if label not in ("POST /oauth/token", "POST /v1/orders:import",
                         "POST /v1/webhooks/tracking", "POST /v1/webhooks/payments"):
            assert any(s < 300 for s in statuses), (label, statuses)
        if label.startswith("POST"):  # a body to break: the refusals were met too
            assert any(s >= 400 for s in statuses), (label, statuses)


async def _webhook_ids(app: FastAPI, engine: AsyncEngine, secret: str) -> dict[str, str]:
    """Path parameters that exist: an endpoint the DELETE may take, another whose log is
    read, and a delivery of it to replay."""
    ids = {}
    async with client_of(app, secret) as client:
        for name in ("endpoint_id:DELETE", "endpoint_id:GET"):
            made = await client.post("/v1/webhook-endpoints", headers=key(), json={
                "url": "https://partner.example.com/hooks", "eventTypes": ["order.created"]})
            ids[name] = made.json()["name"].removeprefix("webhookEndpoints/")
    delivery = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(webhook_deliveries.insert().values(
            id=delivery, endpoint_id=uuid.UUID(ids["endpoint_id:GET"]), message_id="msg_1",
            event_type="order.created", payload=b"{}", state="succeeded",
            next_attempt_at=func.now(), finished_at=func.now()))
    ids["delivery_id"] = str(delivery)
    return ids


# --- OAuth2 client credentials -------------------------------------------------------------

async def _token(client: httpx.AsyncClient, partner_id: str, secret: str,
                 **extra: str) -> httpx.Response:
    return await client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": partner_id, "client_secret": secret,
        **extra})


async def test_a_partner_trades_its_key_for_a_token_that_works_like_the_key(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine)
    async with client_of(app) as anonymous:
        issued = await _token(anonymous, partner.partner_id, secret)
    assert issued.status_code == 200, issued.text
    assert issued.headers["cache-control"] == "no-store"
    grant = issued.json()
    assert (grant["token_type"], grant["expires_in"]) == ("Bearer", 900)
    assert set(grant["scope"].split()) == partner.scopes
    async with client_of(app, grant["access_token"]) as client:
        created = await client.post("/v1/orders", json=order_body(next(iter(
            partner.channels))), headers=key())
        assert created.status_code == 201, created.text
        fetched = await client.get(f"/v1/{created.json()['name']}")
    assert fetched.status_code == 200
    async with engine.connect() as conn:
        audited = (await conn.execute(select(audit_log.c.status).where(
            audit_log.c.partner_id == partner.partner_id))).scalars().all()
    assert sorted(audited) == [200, 201], "a token's requests are the partner's"


async def test_a_token_carries_only_the_scopes_asked_for_and_held(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine, scopes=frozenset({"orders:read",
                                                                  "orders:write"}))
    async with client_of(app) as anonymous:
        narrow = await _token(anonymous, partner.partner_id, secret, scope="orders:read")
        beyond = await _token(anonymous, partner.partner_id, secret,
                              scope="orders:read payments:write")
    assert narrow.json()["scope"] == "orders:read"
    assert beyond.status_code == 400 and beyond.json()["error"] == "invalid_scope"
    async with client_of(app, narrow.json()["access_token"]) as client:
        refused = await client.post("/v1/orders", json=order_body(next(iter(
            partner.channels))), headers=key())
        allowed = await client.get(f"/v1/orders/{uuid.uuid4()}")
    assert assert_problem(refused, 403, "permission-denied")["scope"] == "orders:write"
    assert allowed.status_code == 404, "read is the token's scope: the order is just missing"


async def test_a_wrong_secret_or_another_partners_key_gets_no_token(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine)
    other, other_secret = await new_partner(engine)
    await partners.revoke(engine, other.partner_id)
    async with client_of(app) as anonymous:
        replies = [
            await _token(anonymous, partner.partner_id, secret[:-1] + "x"),
            await _token(anonymous, partner.partner_id, "not-a-key"),
            await _token(anonymous, partner.partner_id, other_secret),
            await _token(anonymous, other.partner_id, other_secret),
            await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"},
                                 auth=(partner.partner_id, "wrong")),
        ]
        by_basic = await anonymous.post("/oauth/token", data={
            "grant_type": "client_credentials"}, auth=(partner.partner_id, secret))
    for reply in replies:
        assert reply.status_code == 401, reply.text
        assert reply.json()["error"] == "invalid_client"
    assert replies[-1].headers["www-authenticate"].startswith("Basic")
    assert by_basic.status_code == 200, "HTTP Basic client authentication (RFC 6749 2.3.1)"


async def test_an_expired_forged_or_revoked_partners_token_is_401(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    from oms_gateway.oauth.domain import issue

    partner, secret = await new_partner(engine)
    now = datetime.now(UTC)
    expired = issue(partner.partner_id, partner.scopes, secret=app.state.token_secret,
                    ttl=timedelta(seconds=900), now=now - timedelta(seconds=960))
    forged = issue(partner.partner_id, partner.scopes, secret="f" * 43,
                   ttl=timedelta(seconds=900), now=now)
    async with client_of(app) as anonymous:
        live = (await _token(anonymous, partner.partner_id, secret)).json()["access_token"]
    probe = f"/v1/orders/{uuid.uuid4()}"
    for token in (expired, forged, live[:-2] + "xx"):
        async with client_of(app, token) as client:
            reply = await client.get(probe)
        assert_problem(reply, 401, "unauthenticated")
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]
    async with client_of(app, live) as client:
        assert (await client.get(probe)).status_code == 404
        await partners.revoke(engine, partner.partner_id)
        assert_problem(await client.get(probe), 401, "unauthenticated")


async def test_replicas_share_the_stored_signing_key_and_a_set_one_wins(
    app: FastAPI, engine: AsyncEngine, gateway_database: str, orders_service: Service,
) -> None:
    partner, secret = await new_partner(engine)
    async with client_of(app) as anonymous:
        token = (await _token(anonymous, partner.partner_id, secret)).json()["access_token"]
    probe = f"/v1/orders/{uuid.uuid4()}"
    target = f"127.0.0.1:{orders_service.bound_port}"
    async for replica in _serving(GatewaySettings(database_url=gateway_database,
                                                  orders_target=target)):
        assert replica.state.token_secret == app.state.token_secret
        async with client_of(replica, token) as client:
            assert (await client.get(probe)).status_code == 404, "the other replica's token"
    async for configured in _serving(GatewaySettings(
            database_url=gateway_database, orders_target=target, jwt_secret="k" * 32)):
        assert configured.state.token_secret == b"k" * 32
        async with client_of(configured, token) as client:
            assert_problem(await client.get(probe), 401, "unauthenticated")



# --- listing -------------------------------------------------------------------------------

async def test_a_channels_orders_are_listed_page_by_page_newest_first(
    app: FastAPI, engine: AsyncEngine,
) -> None:
    partner, secret = await new_partner(engine, channels=(f"a-{uuid.uuid4().hex[:6]}",
                                                          f"b-{uuid.uuid4().hex[:6]}"))
    first, second = sorted(partner.channels)
    async with client_of(app, secret) as client:
        names = []
        for _ in range(3):
            created = await client.post("/v1/orders", json=order_body(first), headers=key())
            names.append(created.json()["name"])
        await client.post("/v1/orders", json=order_body(second), headers=key())
        pages, token = [], ""
        while True:
            reply = await client.get("/v1/orders", params={
                "channel": first, "pageSize": 2, **({"pageToken": token} if token else {})})
            assert reply.status_code == 200, reply.text
            pages.append([o["name"] for o in reply.json().get("orders", [])])
            token = reply.json().get("nextPageToken", "")
            if not token:
                break
        filtered = await client.get("/v1/orders", params={
            "channel": first, "filter": "status != ORDER_STATUS_CANCELLED", "pageSize": 2})
        stale = await client.get("/v1/orders", params={
            "channel": second, "pageSize": 2, "pageToken": filtered.json()["nextPageToken"]})
        unnamed = await client.get("/v1/orders")
        elsewhere = await client.get("/v1/orders", params={"channel": "not-mine"})
        bad_filter = await client.get("/v1/orders", params={"channel": first,
                                                            "filter": "status = A OR x = 1"})
        too_large = await client.get("/v1/orders", params={"channel": first, "pageSize": 501})
    assert pages == [names[::-1][:2], names[::-1][2:]]
    assert _fields(assert_problem(stale, 400, "invalid-argument")) == {"pageToken"}
    assert _fields(assert_problem(unnamed, 400, "invalid-argument")) == {"channel"}
    assert _fields(assert_problem(elsewhere, 403, "permission-denied")) == {"channel"}
    assert _fields(assert_problem(bad_filter, 400, "invalid-argument")) == {"filter"}
    assert _fields(assert_problem(too_large, 400, "invalid-argument")) == {"pageSize"}
