"""The stock routes: ``GET /v1/stock/{sku}`` and ``GET /v1/stock?sku=…`` (a batch), what
the partner's sales channels may sell, over the inventory service's ``GetAvailableToSell``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Path, Query, Request
from oms.inventory.v1 import inventory_pb2
from pydantic import StringConstraints

from oms_gateway.auth import require
from oms_gateway.channels import chosen_channel
from oms_gateway.openapi import Operation
from oms_gateway.partners.domain import Kind, Partner
from oms_gateway.problems import Problem
from oms_gateway.stock import domain

# GetAvailableToSell calls of one batch in flight at once: a batch is answered about as fast
# as a few calls, without one partner's batch taking every connection of the pool.
CONCURRENT_LOOKUPS = 8

_CHANNEL_STOCK = {"$ref": "#/components/schemas/ChannelAvailableToSell"}
STOCK = {
    "type": "object", "title": "Stock", "additionalProperties": False,
    "required": ["sku", "channels"],
    "properties": {
        "sku": {"type": "string", "examples": ["TSHIRT-BLK-M"]},
        "channels": {"type": "array", "items": _CHANNEL_STOCK,
                     "description": "Per channel of the partner (or the one asked for), by "
                     "name: the units it may sell and the buffer it holds back"}}}
STOCK_BATCH = {
    "type": "object", "title": "StockBatch", "additionalProperties": False,
    "required": ["stock", "notFound"],
    "properties": {
        "stock": {"type": "array", "items": STOCK, "description": "In the order asked"},
        "notFound": {"type": "array", "items": {"type": "string"},
                     "description": "The SKUs the catalogue does not have"}}}
_REFERS = (inventory_pb2.ChannelAvailableToSell.DESCRIPTOR,)
OPERATIONS = {
    ("GET", "/v1/stock/{sku}"): Operation(
        STOCK, refers_to=_REFERS, description="What the partner's channels may sell of the SKU"),
    ("GET", "/v1/stock"): Operation(
        STOCK_BATCH, refers_to=_REFERS,
        description="What the partner's channels may sell of each SKU"),
}
_Sku = Annotated[str, StringConstraints(pattern=domain.SKU_PATTERN)]
_CHANNEL = Query(description="One of the partner's channels; left out, every one of them")


def router(*, timeout: float) -> APIRouter:
    routes = APIRouter()

    @routes.get("/v1/stock/{sku}", tags=["stock"],
                summary="What the partner's channels may sell of a SKU")
    async def get_stock(
        request: Request,
        sku: Annotated[str, Path(pattern=domain.SKU_PATTERN,
                                 description="A catalogue SKU")],
        partner: Annotated[Partner, Depends(require("stock:read"))],
        channel: Annotated[str | None, _CHANNEL] = None,
    ) -> dict[str, Any]:
        """The network's available units less each channel's buffer, never below zero. A
        SKU the catalogue does not have is 404."""
        channels = _channels(partner, channel)
        found = await _available(request, sku, timeout)
        if found is None:
            raise Problem(404, "Not found", f"no SKU {sku}", kind="not-found")
        return _stock(sku, found, channels)

    @routes.get("/v1/stock", tags=["stock"],
                summary="What the partner's channels may sell of several SKUs")
    async def batch_get_stock(
        request: Request,
        partner: Annotated[Partner, Depends(require("stock:read"))],
        sku: Annotated[list[_Sku], Query(
            min_length=1, max_length=domain.MAX_BATCH_SKUS,
            description=f"1 to {domain.MAX_BATCH_SKUS} SKUs: `?sku=A&sku=B`")],
        channel: Annotated[str | None, _CHANNEL] = None,
    ) -> dict[str, Any]:
        """As `GET /v1/stock/{sku}` for each SKU; those the catalogue does not have are
        listed in `notFound` rather than failing the batch."""
        channels = _channels(partner, channel)
        skus = list(dict.fromkeys(sku))
        gate = asyncio.Semaphore(CONCURRENT_LOOKUPS)

        async def one(each: str) -> inventory_pb2.AvailableToSell | None:
            async with gate:
                return await _available(request, each, timeout)

        found = await asyncio.gather(*(one(each) for each in skus))
        return {"stock": [_stock(each, reply, channels)
                          for each, reply in zip(skus, found, strict=True) if reply],
                "notFound": [each for each, reply in zip(skus, found, strict=True)
                             if reply is None]}

    return routes


def _channels(partner: Partner, channel: str | None) -> frozenset[str]:
    """The channels to answer for: stock is a sales channel's, of its own channels only."""
    if partner.kind is not Kind.SALES_CHANNEL:
        raise Problem(403, "Permission denied", "stock is answered to sales channels",
                      kind="permission-denied")
    if channel is None:
        return partner.channels
    return frozenset({chosen_channel(partner, channel, action="read the stock of")})


async def _available(request: Request, sku: str,
                     timeout: float) -> inventory_pb2.AvailableToSell | None:
    """Inventory's answer; None for a SKU it does not have (or could not name)."""
    try:
        return await request.app.state.inventory.GetAvailableToSell(
            inventory_pb2.GetAvailableToSellRequest(product=f"products/{sku}"),
            timeout=timeout)
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return None
        raise


def _stock(sku: str, reply: inventory_pb2.AvailableToSell,
           channels: frozenset[str]) -> dict[str, Any]:
    buffered = {c.channel: c.buffer for c in reply.channels}
    return {"sku": sku, "channels": [
        # The JSON mapping's own: 64-bit integers as strings; zeros written out.
        {"channel": c.channel, "availableToSell": str(c.available_to_sell),
         "buffer": str(c.buffer)}
        for c in domain.for_channels(reply.network_available, buffered, channels)]}
