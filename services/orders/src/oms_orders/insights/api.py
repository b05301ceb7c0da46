"""The KPIs' gRPC methods: OrderInsightsService.GetOrderKpis and ExportOrderKpis."""

from __future__ import annotations

import grpc
from oms.orders.v1 import insights_pb2
from oms_platform.errors import Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.insights import convert, domain, store


class InsightsApi:
    """The order KPIs per period, for the channels asked for together and one by one,
    bounded in range and size; as protobuf or as CSV."""

    _sessions: async_sessionmaker[AsyncSession]

    async def GetOrderKpis(
        self, request: insights_pb2.GetOrderKpisRequest, context: grpc.aio.ServicerContext
    ) -> insights_pb2.GetOrderKpisResponse:
        figures = await self._figures(request)
        return insights_pb2.GetOrderKpisResponse(
            kpis=[convert.kpis_to_proto(f) for f in figures])

    async def ExportOrderKpis(
        self, request: insights_pb2.ExportOrderKpisRequest, context: grpc.aio.ServicerContext
    ) -> insights_pb2.ExportOrderKpisResponse:
        figures = await self._figures(request)
        document = convert.kpis_csv(figures)
        violations = Violations()
        violations.require(
            len(document) <= domain.MAX_EXPORT_BYTES, "end_time",
            f"the export would exceed {domain.MAX_EXPORT_BYTES} bytes: ask for fewer periods "
            "or channels")
        violations.raise_if_any()
        return insights_pb2.ExportOrderKpisResponse(csv=document, rows=len(figures))

    async def _figures(self, request: convert.KpiRequest) -> list[domain.PeriodKpis]:
        violations = Violations()
        start = convert.request_time(request, "start_time", violations)
        end = convert.request_time(request, "end_time", violations)
        violations.raise_if_any()
        granularity = convert.GRANULARITY.get(request.granularity)
        breakdown = convert.BREAKDOWN.get(request.breakdown)
        domain.check_range(violations, start, end, granularity)
        channels = list(request.channels)
        domain.check_channels(violations, request.channel, channels)
        violations.require(breakdown is not None, "breakdown", "unknown breakdown")
        violations.raise_if_any()
        assert start is not None and end is not None and granularity is not None
        assert breakdown is not None
        async with self._sessions.begin() as session:
            figures = await store.order_kpis(
                session, start=start, end=end, granularity=granularity,
                channels=[request.channel] if request.channel else channels,
                breakdown=breakdown, limit=domain.MAX_FIGURES,
            )
        domain.check_figures(violations, len(figures))
        violations.raise_if_any()
        return figures
