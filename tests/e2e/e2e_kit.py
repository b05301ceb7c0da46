"""Helpers of the end-to-end tests: test data through the public APIs, stream reads."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import Iterator

import nats
import psycopg
from google.type import latlng_pb2
from nats.js.api import ConsumerConfig, DeliverPolicy, PubAck
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from psycopg import sql
from sqlalchemy.engine import make_url

WEST = ("Reno", "NV", 39.5296, -119.8138)
EAST = ("Edison", "NJ", 40.5187, -74.4121)


async def add_node(inventory: inventory_pb2_grpc.InventoryServiceStub,
                   place: tuple[str, str, float, float], priority: int = 1) -> str:
    city, state, lat, lng = place
    node_id = f"{city.lower()}-{secrets.token_hex(4)}"
    await inventory.CreateFulfilmentNode(inventory_pb2.CreateFulfilmentNodeRequest(
        fulfilment_node=inventory_pb2.FulfilmentNode(
            node_id=node_id, display_name=city, type=inventory_pb2.NODE_TYPE_WAREHOUSE,
            priority=priority,
            address=common_pb2.Address(
                recipient=city, address_lines=["1 Dock Rd"], locality=city,
                administrative_area=state, postal_code="00000", region_code="US",
                location=latlng_pb2.LatLng(latitude=lat, longitude=lng)),
        )))
    return node_id


async def add_sku(inventory: inventory_pb2_grpc.InventoryServiceStub,
                  stock: dict[str, int]) -> str:
    sku = f"SKU-{secrets.token_hex(5).upper()}"
    await inventory.CreateProduct(inventory_pb2.CreateProductRequest(
        product=inventory_pb2.Product(sku=sku, title=sku)))
    for node_id, units in stock.items():
        await inventory.AdjustStock(inventory_pb2.AdjustStockRequest(
            node_id=node_id, sku=sku, delta=units,
            reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT))
    return sku


def order_json(sku: str, quantity: int = 1, *, state: str = "CA", city: str = "Los Angeles",
               channel: str = "shopify-e2e") -> dict[str, object]:
    return {
        "channel": channel,
        "externalOrderId": uuid.uuid4().hex,
        "customer": {"displayName": "Grace Hopper", "email": "grace@example.com"},
        "shippingAddress": {
            "recipient": "Grace Hopper", "addressLines": ["100 Main St"], "locality": city,
            "administrativeArea": state, "postalCode": "90012", "regionCode": "US",
        },
        "lines": [{"sku": sku, "quantity": quantity,
                   "unitPrice": {"currencyCode": "USD", "amount": "12.50"}}],
        "serviceLevel": "SERVICE_LEVEL_STANDARD",
        "paymentStatus": "PAYMENT_STATUS_PAID",
    }


async def stream_messages(nats_url: str, stream: str, subject: str) -> list[nats.aio.msg.Msg]:
    """Every message stored in `stream` on `subject`, read by a throwaway consumer."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        subscription = await js.pull_subscribe(
            subject, stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0),
        )
        messages: list[nats.aio.msg.Msg] = []
        while len(messages) < info.state.messages:
            try:
                batch = await subscription.fetch(500, timeout=1.0)
            except TimeoutError:  # nats' own TimeoutError is one too
                break
            messages.extend(batch)
        await subscription.unsubscribe()
        return messages
    finally:
        await nc.close()


def _subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a last ``>`` one or more."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > i
        if i >= len(tokens) or token not in ("*", tokens[i]):
            return False
    return len(wanted) == len(tokens)


async def handled(nats_url: str, subject: str, ack: PubAck, timeout: float = 30.0) -> set[str]:
    """Waits until every durable consumer that reads `subject` has acknowledged the message
    of `ack` and all before it, and returns their names. The services acknowledge after their
    transaction commits, so whatever the message was going to change has changed by then."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            readers, behind = set(), set()
            for info in await js.consumers_info(ack.stream):
                filters = info.config.filter_subjects or [info.config.filter_subject or ">"]
                if not info.config.durable_name or not any(
                        _subject_matches(f, subject) for f in filters):
                    continue
                readers.add(info.name)
                if info.ack_floor is None or info.ack_floor.stream_seq < ack.seq:
                    behind.add(info.name)
            if readers and not behind:
                return readers
            if time.monotonic() > deadline:
                raise AssertionError(f"{ack.stream} #{ack.seq} never handled by {behind}")
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


@contextlib.contextmanager
def database_unreachable(database_url: str) -> Iterator[None]:
    """The database refuses connections and loses the ones it had, as when its server goes
    away; the server itself (and every other database on it) stays up."""
    url = make_url(database_url)
    database = sql.Identifier(str(url.database))
    maintenance = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("alter database {} allow_connections false").format(database))
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity"
                     " where datname = %s", (url.database,))
    try:
        yield
    finally:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("alter database {} allow_connections true").format(database))
