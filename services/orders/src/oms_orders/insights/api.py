"""The KPIs' gRPC method: OrderInsightsService.GetOrderKpis."""

from __future__ import annotations

import grpc
from oms.orders.v1 import insights_pb2
from oms_platform.errors import Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.insights import convert, domain, store


class InsightsApi:
    """The order KPIs per period and channel, bounded in range and size."""

    _sessions: async_sessionmaker[AsyncSession]

    async def GetOrderKpis(
        self, request: insights_pb2.GetOrderKpisRequest, context: grpc.aio.ServicerContext
    ) -> insights_pb2.GetOrderKpisResponse:
        violations = Violations()
        start = convert.request_time(request, "start_time", violations)
        end = convert.request_time(request, "end_time", violations)
        violations.raise_if_any()
        granularity = convert.GRANULARITY.get(request.granularity)
        domain.check_range(violations, start, end, granularity)
        violations.raise_if_any()
        assert start is not None and end is not None and granularity is not None
        async with self._sessions.begin() as session:
            figures = await store.order_kpis(
                session, start=start, end=end, granularity=granularity,
                channel=request.channel or None, limit=domain.MAX_FIGURES,
            )
        domain.check_figures(violations, len(figures))
        violations.raise_if_any()
        return insights_pb2.GetOrderKpisResponse(
            kpis=[convert.kpis_to_proto(f) for f in figures])
