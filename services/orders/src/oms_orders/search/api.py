"""Search's gRPC methods: ListOrders and CountOrders."""

from __future__ import annotations

import uuid
from datetime import datetime

import grpc
from oms.orders.v1 import orders_pb2
from oms_platform import lists
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.lifecycle.convert import order_to_proto
from oms_orders.search import convert, domain, store


class SearchApi:
    """Orders matching a filter, newest first, in pages; and their counts per status."""

    _sessions: async_sessionmaker[AsyncSession]

    async def ListOrders(
        self, request: orders_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.ListOrdersResponse:
        query = {"filter": request.filter}
        parsed, after, size = lists.parameters(
            request, query, (datetime, uuid.UUID), fields=domain.FIELDS, text_search=True,
            max_page_size=domain.MAX_PAGE_SIZE)
        async with self._sessions.begin() as session:
            found = await store.list_orders(
                session, store.conditions(parsed), limit=size + 1,
                after=(after[0], after[1]) if after else None)
        return orders_pb2.ListOrdersResponse(
            orders=[order_to_proto(o) for o in found[:size]],
            next_page_token=lists.next_page_token(
                found, size, lambda order: [order.create_time, str(order.id)], query))

    async def CountOrders(
        self, request: orders_pb2.CountOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CountOrdersResponse:
        parsed = domain.parse(request.filter)
        async with self._sessions.begin() as session:
            counts = await store.count_orders(session, store.conditions(parsed))
        return convert.counts_to_proto(counts)
