"""The gRPC API: proto to domain, validate, one transaction, domain to proto."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import structlog
from oms.orders.v1 import orders_pb2, orders_pb2_grpc
from oms_platform.errors import FieldViolation, InvalidArgument, NotFound
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders import convert, domain, repository

log = structlog.get_logger(__name__)


class OrdersServicer(orders_pb2_grpc.OrdersServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        order = domain.place_order(
            convert.draft_from_proto(request.order),
            order_id=uuid.uuid4(),
            now=datetime.now(UTC),
            request_id=request.request_id,
        )
        request_id = request.request_id or None
        async with self._sessions.begin() as session:
            if await repository.add(session, order, request_id=request_id):
                log.info("order created", order=order.name, channel=order.channel,
                         external_order_id=order.external_order_id, request_id=request_id)
                return convert.order_to_proto(order)
            existing = await repository.find_duplicate(
                session,
                request_id=request_id,
                channel=order.channel,
                external_order_id=order.external_order_id,
            )
        if existing is None:
            raise RuntimeError(f"{order.name} conflicted with an order that cannot be found")
        log.info("order already captured", order=existing.name, channel=order.channel,
                 external_order_id=order.external_order_id, request_id=request_id)
        return convert.order_to_proto(existing)

    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        order_id = domain.parse_order_name(request.name)
        if order_id is None:
            raise InvalidArgument([FieldViolation("name", 'must be "orders/{uuid}"')])
        async with self._sessions.begin() as session:
            order = await repository.get(session, order_id)
        if order is None:
            raise NotFound(f"{request.name} not found", reason="ORDER_NOT_FOUND",
                           metadata={"name": request.name})
        return convert.order_to_proto(order)
