"""What the gateway's webhook tests share: partners with signing secrets, signed posts as a
carrier or payment provider sends them, and clients held to the OpenAPI document."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from gateway_contract import Contract
from oms_gateway.partners import store as partners
from oms_gateway.partners.domain import DEFAULT_SCOPES, Kind, Partner
from oms_gateway.webhooks import partner_secrets
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook


def client_of(app: FastAPI, key: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://gateway", headers=headers,
                             event_hooks={"response": [Contract(app.openapi()).hook]})


async def new_partner(engine: AsyncEngine, kind: Kind, *, channels: tuple[str, ...] = (),
                      carriers: tuple[str, ...] = (), nodes: tuple[str, ...] = (),
                      scopes: frozenset[str] | None = None) -> tuple[Partner, str, str]:
    """A partner, its API key and its webhook signing secret."""
    partner_id = f"p-{uuid.uuid4().hex[:12]}"
    partner = Partner(partner_id=partner_id, kind=kind, name=partner_id,
                      channels=frozenset(channels), scopes=scopes or DEFAULT_SCOPES[kind],
                      carriers=frozenset(carriers), nodes=frozenset(nodes))
    key = (await partners.create(engine, partner)).secret
    secret = await partner_secrets.issue(engine, partner_id, timedelta(0))
    return partner, key, secret


def signed(secret: str, body: Any, *, webhook_id: str | None = None,
           at: datetime | None = None) -> tuple[bytes, dict[str, str]]:
    """The body's bytes and the Standard Webhooks headers a sender signs them with."""
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    moment = at or datetime.now(UTC)
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    return raw, {"webhook-id": webhook_id,
                 "webhook-timestamp": str(int(moment.timestamp())),
                 "webhook-signature": Webhook(secret).sign(webhook_id, moment, raw.decode()),
                 "content-type": "application/json"}
