"""The notifications' gRPC method: OrderInsightsService.ListOrderNotifications."""

from __future__ import annotations

import grpc
from oms.orders.v1 import insights_pb2
from oms_platform import lists
from oms_platform.errors import Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.lifecycle.domain import order_not_found, parse_order_name
from oms_orders.notifications import convert, domain, store


class NotificationsApi:
    """An order's emails, oldest first, in pages."""

    _sessions: async_sessionmaker[AsyncSession]

    async def ListOrderNotifications(
        self,
        request: insights_pb2.ListOrderNotificationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> insights_pb2.ListOrderNotificationsResponse:
        violations = Violations()
        parent = request.parent
        violations.require(parse_order_name(parent) is not None, "parent",
                           'must be "orders/{uuid}"')
        query = {"parent": parent}
        _, after, size = lists.parameters(request, query, (int,), violations=violations,
                                          max_page_size=domain.MAX_PAGE_SIZE)
        after_id = after[0] if after else 0
        async with self._sessions.begin() as session:
            rows = await store.of_order(session, parent, after=after_id, limit=size + 1)
            if not rows and not after_id and not await store.order_known(session, parent):
                raise order_not_found(parent)
        return insights_pb2.ListOrderNotificationsResponse(
            notifications=[convert.notification_to_proto(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda row: [row.id], query),
        )
