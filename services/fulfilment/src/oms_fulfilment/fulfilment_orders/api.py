"""Fulfilment orders' gRPC methods: GetFulfilmentOrder and ListFulfilmentOrders."""

from __future__ import annotations

import uuid
from datetime import datetime

import grpc
from oms.fulfilment.v1 import fulfilment_pb2
from oms_platform import lists
from oms_platform.errors import NotFound
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.fulfilment_orders import domain, store
from oms_fulfilment.fulfilment_orders.convert import order_to_proto


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
