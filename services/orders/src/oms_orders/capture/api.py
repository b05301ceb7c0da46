"""Capture's gRPC methods: CreateOrder and BatchCreateOrders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import structlog
from oms.orders.v1 import orders_pb2
from oms_platform.errors import DomainError
from oms_platform.grpc_errors import to_status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.capture import convert, domain, store
from oms_orders.lifecycle.convert import order_to_proto
from oms_orders.lifecycle.domain import Order
from oms_orders.settings import OrdersSettings

log = structlog.get_logger(__name__)


class CaptureApi:
    """New orders, one or a batch; a retry with the same request id or channel order answers
    with the order captured before."""

    _sessions: async_sessionmaker[AsyncSession]
    _settings: OrdersSettings

    async def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        async with self._sessions.begin() as session:
            order = await self._capture(session, request, prefix="order")
        return order_to_proto(order)

    async def BatchCreateOrders(
        self, request: orders_pb2.BatchCreateOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.BatchCreateOrdersResponse:
        domain.check_batch_size(len(request.requests), self._settings.max_batch_size)
        results: dict[int, orders_pb2.BatchCreateOrderResult] = {}
        # One transaction for the batch; a refused order writes nothing, so the others
        # commit together. Inserted in the order of their unique keys, answered in request
        # order.
        keys = [(r.order.channel, r.order.external_order_id, r.request_id)
                for r in request.requests]
        async with self._sessions.begin() as session:
            for index in store.insert_order(keys):
                item = request.requests[index]
                try:
                    order = await self._capture(session, item, prefix=f"requests[{index}].order")
                except DomainError as error:
                    results[index] = orders_pb2.BatchCreateOrderResult(error=to_status(error))
                else:
                    results[index] = orders_pb2.BatchCreateOrderResult(
                        order=order_to_proto(order))
        return orders_pb2.BatchCreateOrdersResponse(
            results=[results[index] for index in range(len(keys))])

    async def _capture(
        self, session: AsyncSession, request: orders_pb2.CreateOrderRequest, *, prefix: str
    ) -> Order:
        draft = convert.draft_from_proto(request.order, prefix=prefix)
        products = await store.products(session, (line.sku for line in draft.lines))
        order = domain.place_order(
            draft, order_id=uuid.uuid4(), now=datetime.now(UTC), request_id=request.request_id,
            products=products, policy=self._settings.capture_policy(), prefix=prefix,
        )
        request_id = request.request_id or None
        if await store.add(session, order, request_id=request_id):
            log.info("order created", order=order.name, channel=order.channel,
                     external_order_id=order.external_order_id, request_id=request_id)
            return order
        existing = await store.find_duplicate(
            session, request_id=request_id, channel=order.channel,
            external_order_id=order.external_order_id,
        )
        if existing is None:
            raise RuntimeError(f"{order.name} conflicted with an order that cannot be found")
        log.info("order already captured", order=existing.name, channel=order.channel,
                 external_order_id=order.external_order_id, request_id=request_id)
        return existing
