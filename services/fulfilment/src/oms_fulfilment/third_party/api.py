"""The hand-off's gRPC method: ReportThirdPartyProgress, a 3PL's or a supplier's progress
applied once per request id, forward only."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import structlog
from oms.fulfilment.v1 import fulfilment_pb2
from oms_platform.errors import FailedPrecondition, NotFound
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.fulfilment_orders import store as orders_store
from oms_fulfilment.fulfilment_orders.convert import order_to_proto
from oms_fulfilment.tables import add_events
from oms_fulfilment.third_party import convert, domain, store

log = structlog.get_logger(__name__)


class ThirdPartyApi:
    _sessions: async_sessionmaker[AsyncSession]

    async def ReportThirdPartyProgress(
        self, request: fulfilment_pb2.ReportThirdPartyProgressRequest,
        context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.FulfilmentOrder:
        order_id, report, when = convert.report_of(request)
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            row = await store.lock(session, order_id)
            # Another node's order is as unknown to the caller as one that does not exist.
            if row is None or row.node_id != request.node_id:
                raise NotFound(f"{request.fulfilment_order} not found")
            if row.mode == domain.Mode.IN_HOUSE:
                raise FailedPrecondition(f"{request.fulfilment_order} is picked in-house",
                                         reason="NOT_THIRD_PARTY")
            seen = await store.report(session, row.node_id, request.request_id)
            if seen is not None and seen.fulfilment_order_id != row.id:
                raise FailedPrecondition("request_id was used for another fulfilment order",
                                         reason="REQUEST_ID_REUSED")
            (order,) = await orders_store.load(session, [row.id])
            if seen is None:
                outcome = domain.apply(
                    domain.Progress(row.third_party_progress or "REQUESTED"),
                    store.lines_of(order.lines), report,
                    cancelled=row.status == "CANCELLED")
                lines = {line.line_id: line for line in order.lines}
                reason = convert.SHORT_REASONS.get(request.short_reason)
                created = await store.record(
                    session, row, lines, request_id=request.request_id, outcome=outcome,
                    short_reason=reason, when=when, now=now)
                await add_events(session, convert.shipments_events(
                    row, created, outcome.shorts, lines, reason, when))
                await orders_store.refresh_statuses(session, [row.id], now)
                (order,) = await orders_store.load(session, [row.id])
                log.info("third-party progress", fulfilment_order=request.fulfilment_order,
                         node_id=row.node_id, progress=outcome.progress.value,
                         packages=len(created), units_short=sum(outcome.shorts.values()))
        return order_to_proto(order)
