"""Fulfilment orders' gRPC methods: GetFulfilmentOrder, ListFulfilmentOrders, and the
put-backs a cancellation leaves (ListPutBacks, ConfirmPutBack)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
from oms.fulfilment.v1 import fulfilment_pb2
from oms_platform import lists
from oms_platform.errors import FieldViolation, InvalidArgument, NotFound, Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.fulfilment_orders import domain, store
from oms_fulfilment.fulfilment_orders.convert import order_to_proto, put_back_to_proto


class FulfilmentOrdersApi:
    _sessions: async_sessionmaker[AsyncSession]

    async def GetFulfilmentOrder(
        self, request: fulfilment_pb2.GetFulfilmentOrderRequest,
        context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.FulfilmentOrder:
        order_id = domain.parse_name(request.name)
        async with self._sessions.begin() as session:
            found = await store.load(session, [order_id])
        if not found:
            raise NotFound(f"{request.name} not found")
        return order_to_proto(found[0])

    async def ListFulfilmentOrders(
        self, request: fulfilment_pb2.ListFulfilmentOrdersRequest,
        context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.ListFulfilmentOrdersResponse:
        query = {"filter": request.filter}
        parsed, after, size = lists.parameters(
            request, query, (datetime, uuid.UUID), fields=domain.FIELDS,
            max_page_size=domain.MAX_PAGE_SIZE)
        async with self._sessions.begin() as session:
            keys = await store.list_ids(session, store.conditions(parsed), limit=size + 1,
                                        after=(after[0], after[1]) if after else None)
            found = await store.load(session, [key.id for key in keys[:size]])
        return fulfilment_pb2.ListFulfilmentOrdersResponse(
            fulfilment_orders=[order_to_proto(o) for o in found],
            next_page_token=lists.next_page_token(
                keys, size, lambda key: [key.promised_ship_time, str(key.id)], query))

    async def ListPutBacks(
        self, request: fulfilment_pb2.ListPutBacksRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.ListPutBacksResponse:
        violations = Violations()
        violations.require(bool(request.node_id), "node_id", "required")
        query = {"node_id": request.node_id, "show_confirmed": str(request.show_confirmed)}
        _, after, size = lists.parameters(request, query, (int,), violations=violations,
                                          max_page_size=domain.MAX_PAGE_SIZE)
        async with self._sessions.begin() as session:
            rows = await store.put_back_page(session, request.node_id,
                                             show_confirmed=request.show_confirmed,
                                             after=after[0] if after else None,
                                             limit=size + 1)
        return fulfilment_pb2.ListPutBacksResponse(
            put_backs=[put_back_to_proto(row, row.order_name) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.id], query))

    async def ConfirmPutBack(
        self, request: fulfilment_pb2.ConfirmPutBackRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.PutBack:
        order_name, _, put_back = request.name.rpartition("/putBacks/")
        if not put_back.isdigit() or len(put_back) > 18:
            raise InvalidArgument([FieldViolation(
                "name", 'must be "fulfilmentOrders/{id}/putBacks/{id}"')])
        order_id = domain.parse_name(order_name)
        async with self._sessions.begin() as session:
            row = await store.confirm_put_back(session, order_id, int(put_back),
                                               datetime.now(UTC))
        if row is None:
            raise NotFound(f"{request.name} not found")
        return put_back_to_proto(row, row.order_name)
