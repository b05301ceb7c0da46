"""The gRPC face of the inventory service: validate, act in one transaction, map to proto."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms_platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_inventory import domain, repository
from oms_inventory.domain import LatLng

PRODUCT_NAME = re.compile(r"^products/([^/]+)$")
NODE_NAME = re.compile(r"^fulfilmentNodes/([^/]+)$")
STOCK_LEVEL_NAME = re.compile(r"^fulfilmentNodes/([^/]+)/stockLevels/([^/]+)$")
ORDER_NAME = re.compile(r"^orders/[^/]+$")
NODE_TYPE_PREFIX = "NODE_TYPE_"
REASON_PREFIX = "ADJUSTMENT_REASON_"

Lookup = Callable[[], Awaitable[Row[Any] | None]]


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def CreateProduct(self, request: inventory_pb2.CreateProductRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        _validate_product(request)
        product = request.product
        values: dict[str, Any] = {
            "sku": product.sku,
            "title": product.title,
            "gtin": product.gtin,
            "weight_grams": product.weight.grams if product.HasField("weight") else None,
            "request_id": request.request_id or None,
        }
        if product.HasField("dimensions"):
            values |= {
                "length_mm": product.dimensions.length_mm,
                "width_mm": product.dimensions.width_mm,
                "height_mm": product.dimensions.height_mm,
            }
        async with self._sessions.begin() as session:
            row = await _create_once(
                request.request_id,
                lambda: repository.insert_product(session, values),
                lambda: repository.product_by_request(session, request.request_id),
            )
            if row is None:
                raise AlreadyExists(f"product {product.sku} already exists",
                                    metadata={"name": f"products/{product.sku}"})
        return _product(row)

    async def GetProduct(self, request: inventory_pb2.GetProductRequest,
                         context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        (sku,) = _parse_name(PRODUCT_NAME, request.name, "products/{sku}")
        async with self._sessions.begin() as session:
            row = await repository.product_by_sku(session, sku)
        if row is None:
            raise NotFound(f"product {sku} not found", metadata={"name": request.name})
        return _product(row)

    async def CreateFulfilmentNode(
        self, request: inventory_pb2.CreateFulfilmentNodeRequest,
        context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.FulfilmentNode:
        _validate_node(request)
        node = request.fulfilment_node
        values = {
            "node_id": node.node_id,
            "display_name": node.display_name,
            "node_type": inventory_pb2.NodeType.Name(node.type).removeprefix(NODE_TYPE_PREFIX),
            "address": json_format.MessageToDict(node.address),
            "latitude": node.address.location.latitude,
            "longitude": node.address.location.longitude,
            "priority": node.priority,
            "request_id": request.request_id or None,
        }
        async with self._sessions.begin() as session:
            row = await _create_once(
                request.request_id,
                lambda: repository.insert_node(session, values),
                lambda: repository.node_by_request(session, request.request_id),
            )
            if row is None:
                raise AlreadyExists(f"fulfilment node {node.node_id} already exists",
                                    metadata={"name": f"fulfilmentNodes/{node.node_id}"})
        return _node(row)

    async def GetFulfilmentNode(self, request: inventory_pb2.GetFulfilmentNodeRequest,
                                context: grpc.aio.ServicerContext) -> inventory_pb2.FulfilmentNode:
        (node_id,) = _parse_name(NODE_NAME, request.name, "fulfilmentNodes/{node_id}")
        async with self._sessions.begin() as session:
            row = await repository.node_by_id(session, node_id)
        if row is None:
            raise NotFound(f"fulfilment node {node_id} not found",
                           metadata={"name": request.name})
        return _node(row)

    async def AdjustStock(self, request: inventory_pb2.AdjustStockRequest,
                          context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        _validate_adjustment(request)
        node_id, sku, delta = request.node_id, request.sku, request.delta
        async with self._sessions.begin() as session:
            await _require_node_and_product(session, node_id, sku)
            recorded = await repository.record_adjustment(
                session,
                node_id=node_id,
                sku=sku,
                kind=inventory_pb2.AdjustmentReason.Name(request.reason).removeprefix(
                    REASON_PREFIX),
                delta=delta,
                request_id=request.request_id or None,
            )
            if not recorded:
                return await _replayed_adjustment(session, request)
            level = await repository.change_on_hand(session, node_id, sku, delta)
            if level is None:
                raise FailedPrecondition(
                    f"on-hand of {sku} at {node_id} may not drop below what is reserved",
                    reason="ON_HAND_BELOW_RESERVED",
                    metadata={"name": _stock_level_name(node_id, sku)},
                )
        return _stock_level(node_id, sku, *level)

    async def GetStockLevel(self, request: inventory_pb2.GetStockLevelRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        node_id, sku = _parse_name(STOCK_LEVEL_NAME, request.name,
                                   "fulfilmentNodes/{node_id}/stockLevels/{sku}")
        async with self._sessions.begin() as session:
            await _require_node_and_product(session, node_id, sku)
            level = await repository.stock_level(session, node_id, sku)
        return _stock_level(node_id, sku, *level)

    async def ListReservations(
        self, request: inventory_pb2.ListReservationsRequest, context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.ListReservationsResponse:
        if not ORDER_NAME.fullmatch(request.order):
            raise InvalidArgument([FieldViolation("order", "must be orders/{order}")])
        async with self._sessions.begin() as session:
            rows = await repository.reservations_of(session, request.order)
        return inventory_pb2.ListReservationsResponse(
            reservations=[
                inventory_pb2.Reservation(order=row.order_name, line_id=row.line_id,
                                          node_id=row.node_id, sku=row.sku,
                                          quantity=row.quantity)
                for row in rows
            ]
        )


async def _create_once(request_id: str, insert: Lookup, by_request: Lookup) -> Row[Any] | None:
    """Creates a resource unless the request id was seen: then returns the first result.
    None when the resource exists and was created by another request."""
    if request_id and (earlier := await by_request()) is not None:
        return earlier
    created = await insert()
    if created is None and request_id:
        # A concurrent call with the same request id may have committed in between.
        return await by_request()
    return created


async def _require_node_and_product(session: AsyncSession, node_id: str, sku: str) -> None:
    node, product = await repository.node_and_product_exist(session, node_id, sku)
    missing = [
        *([] if node else [f"fulfilmentNodes/{node_id}"]),
        *([] if product else [f"products/{sku}"]),
    ]
    if missing:
        raise NotFound(f"{' and '.join(missing)} not found", metadata={"name": missing[0]})


async def _replayed_adjustment(
    session: AsyncSession, request: inventory_pb2.AdjustStockRequest
) -> inventory_pb2.StockLevel:
    earlier = await repository.adjustment_by_request(session, request.request_id)
    assert earlier is not None
    if (earlier.node_id, earlier.sku, earlier.on_hand_delta) != (
        request.node_id, request.sku, request.delta
    ):
        raise InvalidArgument([FieldViolation(
            "request_id", "already used for a different adjustment")])
    level = await repository.stock_level(session, request.node_id, request.sku)
    return _stock_level(request.node_id, request.sku, *level)


def _parse_name(pattern: re.Pattern[str], name: str, template: str) -> tuple[str, ...]:
    match = pattern.fullmatch(name)
    if match is None:
        raise InvalidArgument([FieldViolation("name", f"must be {template}")])
    return match.groups()


def _validate_product(request: inventory_pb2.CreateProductRequest) -> None:
    violations = Violations()
    if violations.require(request.HasField("product"), "product", "required"):
        product = request.product
        domain.check_sku(violations, "product.sku", product.sku)
        domain.check_gtin(violations, "product.gtin", product.gtin)
        domain.check_not_negative(violations, "product.weight.grams", product.weight.grams)
        for dimension in ("length_mm", "width_mm", "height_mm"):
            domain.check_not_negative(violations, f"product.dimensions.{dimension}",
                                      getattr(product.dimensions, dimension))
    domain.check_request_id(violations, "request_id", request.request_id)
    violations.raise_if_any()


def _validate_node(request: inventory_pb2.CreateFulfilmentNodeRequest) -> None:
    violations = Violations()
    if violations.require(request.HasField("fulfilment_node"), "fulfilment_node", "required"):
        node = request.fulfilment_node
        domain.check_node_id(violations, "fulfilment_node.node_id", node.node_id)
        violations.require(node.type != inventory_pb2.NODE_TYPE_UNSPECIFIED,
                           "fulfilment_node.type", "required")
        if violations.require(node.HasField("address"), "fulfilment_node.address", "required"):
            location = node.address.location
            domain.check_location(
                violations,
                "fulfilment_node.address.location",
                LatLng(location.latitude, location.longitude)
                if node.address.HasField("location") else None,
            )
        domain.check_not_negative(violations, "fulfilment_node.priority", node.priority)
    domain.check_request_id(violations, "request_id", request.request_id)
    violations.raise_if_any()


def _validate_adjustment(request: inventory_pb2.AdjustStockRequest) -> None:
    violations = Violations()
    domain.check_node_id(violations, "node_id", request.node_id)
    domain.check_sku(violations, "sku", request.sku)
    domain.check_delta(violations, "delta", request.delta)
    violations.require(request.reason != inventory_pb2.ADJUSTMENT_REASON_UNSPECIFIED,
                       "reason", "required")
    domain.check_request_id(violations, "request_id", request.request_id)
    violations.raise_if_any()


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _product(row: Row[Any]) -> inventory_pb2.Product:
    product = inventory_pb2.Product(
        name=f"products/{row.sku}",
        sku=row.sku,
        title=row.title,
        gtin=row.gtin,
        create_time=_timestamp(row.create_time),
    )
    if row.weight_grams is not None:
        product.weight.grams = row.weight_grams
    if row.length_mm is not None:
        product.dimensions.CopyFrom(common_pb2.Dimensions(
            length_mm=row.length_mm, width_mm=row.width_mm, height_mm=row.height_mm))
    return product


def _node(row: Row[Any]) -> inventory_pb2.FulfilmentNode:
    return inventory_pb2.FulfilmentNode(
        name=f"fulfilmentNodes/{row.node_id}",
        node_id=row.node_id,
        display_name=row.display_name,
        type=inventory_pb2.NodeType.Value(NODE_TYPE_PREFIX + row.node_type),
        address=json_format.ParseDict(row.address, common_pb2.Address()),
        priority=row.priority,
        create_time=_timestamp(row.create_time),
    )


def _stock_level_name(node_id: str, sku: str) -> str:
    return f"fulfilmentNodes/{node_id}/stockLevels/{sku}"


def _stock_level(node_id: str, sku: str, on_hand: int, reserved: int) -> inventory_pb2.StockLevel:
    return inventory_pb2.StockLevel(
        name=_stock_level_name(node_id, sku),
        node_id=node_id,
        sku=sku,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
    )
