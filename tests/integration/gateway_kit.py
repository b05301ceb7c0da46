"""Helpers for the gateway's rate limit, CSV and stock tests: the gateway in process over its
real database in front of real services, partners with their keys, and clients whose every
answer is held to the OpenAPI document."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from gateway_contract import Contract
from oms_gateway.app import create_app
from oms_gateway.partners import store as partners
from oms_gateway.partners.domain import SCOPES, Kind, Partner
from oms_gateway.problems import PROBLEM_JSON
from oms_gateway.settings import GatewaySettings
from oms_platform.service import Service
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def serving(settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client_of(app: FastAPI, key: str | None = None, **headers: str) -> httpx.AsyncClient:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://gateway", headers=headers,
                             event_hooks={"response": [Contract(app.openapi()).hook]})


async def new_partner(engine: AsyncEngine, kind: Kind = Kind.SALES_CHANNEL, *,
                      channels: tuple[str, ...] | None = None,
                      scopes: frozenset[str] = SCOPES,
                      partner_id: str | None = None) -> tuple[Partner, str]:
    partner_id = partner_id or f"p-{uuid.uuid4().hex[:12]}"
    if channels is None:
        channels = (f"shop-{uuid.uuid4().hex[:8]}",) if kind is Kind.SALES_CHANNEL else ()
    partner = Partner(partner_id=partner_id, kind=kind, name=partner_id,
                      channels=frozenset(channels), scopes=scopes)
    return partner, (await partners.create(engine, partner)).secret


def order_body(channel: str, external: str | None = None, sku: str = "TSHIRT-BLK-M",
               ) -> dict[str, Any]:
    return {
        "channel": channel, "externalOrderId": external or uuid.uuid4().hex,
        "shippingAddress": {"recipient": "Ada", "addressLines": ["1 Market St"],
                            "locality": "San Francisco", "administrativeArea": "CA",
                            "postalCode": "94105", "regionCode": "US"},
        "lines": [{"sku": sku, "quantity": 1,
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


async def orders_of(service: Service, channel: str) -> list[str]:
    """The external ids of a channel's orders, as the orders service stored them."""
    assert service.runtime is not None
    async with service.runtime.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT external_order_id FROM orders WHERE channel = :c ORDER BY 1"),
            {"c": channel})
        return [row[0] for row in rows]
