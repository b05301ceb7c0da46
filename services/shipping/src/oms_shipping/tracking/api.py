"""The tracking RPCs: RecordTrackingEvents and GetTracking. A mixin of the service's servicer,
which provides ``self._sessions`` and ``self._settings``."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from oms.shipping.v1 import shipping_pb2
from oms_platform.errors import NotFound, Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_shipping.settings import ShippingSettings
from oms_shipping.tables import add_events
from oms_shipping.tracking import convert, domain, store


class TrackingApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: ShippingSettings

    async def RecordTrackingEvents(
        self, request: shipping_pb2.RecordTrackingEventsRequest,
        context: grpc.aio.ServicerContext,
    ) -> shipping_pb2.RecordTrackingEventsResponse:
        violations = Violations()
        scans = domain.check_events(violations, [convert.draft(e) for e in request.events],
                                    now=datetime.now(UTC))
        violations.raise_if_any()
        async with self._sessions.begin() as session:
            result = await store.record(session, scans)
            await add_events(session, convert.events(result.progress))
        # A copy of an event within the request is a duplicate as much as one sent before.
        result.duplicates += len(request.events) - len(scans)
        return convert.recorded(result)

    async def GetTracking(self, request: shipping_pb2.GetTrackingRequest,
                          context: grpc.aio.ServicerContext) -> shipping_pb2.Tracking:
        violations = Violations()
        violations.require(
            0 < len(request.tracking_number.strip()) <= domain.MAX_TRACKING_NUMBER_LENGTH,
            "tracking_number", f"required, at most {domain.MAX_TRACKING_NUMBER_LENGTH} characters")
        violations.raise_if_any()
        async with self._sessions.begin() as session:
            found = await store.tracking(session, request.tracking_number)
        if found is None:
            raise NotFound(f"no parcel with tracking number {request.tracking_number}",
                           metadata={"tracking_number": request.tracking_number})
        return convert.tracking(*found)
