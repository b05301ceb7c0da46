"""Search's gRPC methods: ListOrders and CountOrders."""

from __future__ import annotations

import grpc
from oms.orders.v1 import orders_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.lifecycle.convert import order_to_proto
from oms_orders.search import convert, domain, store


class SearchApi:
    """Orders matching a filter, newest first, in pages; and their counts per status."""

    _sessions: async_sessionmaker[AsyncSession]

    async def ListOrders(
        self, request: orders_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.ListOrdersResponse:
        size = domain.page_size(request.page_size)
        parsed = domain.parse(request.filter)
        after = convert.after_of(request.page_token, request.filter)
        async with self._sessions.begin() as session:
            found = await store.list_orders(
                session, store.conditions(parsed), limit=size + 1, after=after)
        page = found[:size]
        token = (convert.page_token(page[-1], request.filter) if len(found) > size else "")
        return orders_pb2.ListOrdersResponse(
            orders=[order_to_proto(o) for o in page], next_page_token=token)

    async def CountOrders(
        self, request: orders_pb2.CountOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CountOrdersResponse:
        parsed = domain.parse(request.filter)
        async with self._sessions.begin() as session:
            counts = await store.count_orders(session, store.conditions(parsed))
        return convert.counts_to_proto(counts)
