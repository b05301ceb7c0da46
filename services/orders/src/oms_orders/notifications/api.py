"""The notifications' gRPC method: OrderInsightsService.ListOrderNotifications."""

from __future__ import annotations

import grpc
from oms.orders.v1 import insights_pb2
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
        violations.require(request.page_size >= 0, "page_size", "must not be negative")
        after = convert.after_of(request.page_token, parent, violations)
        violations.raise_if_any()
        size = min(request.page_size or domain.DEFAULT_PAGE_SIZE, domain.MAX_PAGE_SIZE)
        async with self._sessions.begin() as session:
            rows = await store.of_order(session, parent, after=after, limit=size + 1)
            if not rows and not after and not await store.order_known(session, parent):
                raise order_not_found(parent)
        page, more = rows[:size], len(rows) > size
        return insights_pb2.ListOrderNotificationsResponse(
            notifications=[convert.notification_to_proto(row) for row in page],
            next_page_token=convert.page_token(parent, page[-1].id) if more else "",
        )
