"""Helpers of the end-to-end tests: orders as partners post them, stream reads, a database
going away, the demo data. Nodes, SKUs, events and waits come from `oms_devtools.testkit`."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import httpx
import nats
import psycopg
from nats.js.api import ConsumerConfig, DeliverPolicy
from oms_devtools import demo
from oms_devtools.stack import Stack
from psycopg import sql
from sqlalchemy.engine import make_url

WEST = (39.5296, -119.8138)  # Reno, NV
EAST = (40.5187, -74.4121)  # Edison, NJ


E2E_CHANNEL = "shopify-e2e"


def create_partner(stack: Stack, partner_id: str, kind: str, *, channels: tuple[str, ...] = (),
                   scopes: tuple[str, ...] = ()) -> str:
    """A partner made through the gateway's CLI; returns its API key."""
    return stack.create_partner(partner_id, kind, channels=channels, scopes=scopes)


async def add_idempotency_key(request: httpx.Request) -> None:
    """As a partner's client does: a fresh key for every POST that does not bring its own."""
    if request.method == "POST" and "idempotency-key" not in request.headers:
        request.headers["Idempotency-Key"] = uuid.uuid4().hex


def order_json(sku: str, quantity: int = 1, *, state: str = "CA", city: str = "Los Angeles",
               channel: str = E2E_CHANNEL) -> dict[str, object]:
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


def load_demo(stack: Stack) -> None:
    """The demo data `make run` loads: warehouses, catalogue and stock into inventory,
    carriers, rate cards and origins into shipping, slots into fulfilment."""
    endpoints = stack.endpoints()
    demo.load(endpoints["inventory"])
    demo.load_shipping(endpoints["shipping"])
    demo.load_fulfilment(endpoints["fulfilment"])
