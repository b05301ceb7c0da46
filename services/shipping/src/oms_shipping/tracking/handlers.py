"""Tracking's background work: the no-scan sweep. (Tracking consumes no events: carriers'
scans arrive through RecordTrackingEvents.)"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from oms_shipping.settings import ShippingSettings
from oms_shipping.tables import add_events
from oms_shipping.tracking import convert, domain, store

log = structlog.get_logger(__name__)


async def sweep_stale(session: AsyncSession, settings: ShippingSettings,
                      now: datetime) -> int:
    """Turns at most ``stale_batch_size`` parcels on their way with no scan for
    ``stale_after_days`` days into exceptions, in the caller's transaction; returns how many
    parcels it looked at (a full batch means there may be more).

    Each exception is an event dated N days after the parcel's last scan, recorded as any
    other: a second sweep (another replica, a retry after a failed commit) meets its key, and
    the parcel, now an exception, is out of the sweep until a new scan puts it on its way."""
    days = settings.stale_after_days
    parcels = await store.stale_parcels(session, domain.stale_before(now, days),
                                        settings.stale_batch_size)
    scans = [domain.no_scan(p.carrier, p.tracking_number, p.parcel.last_event_time, days)
             for p in parcels if p.parcel.last_event_time is not None]
    if not scans:
        return 0
    result = await store.record(session, scans)
    await add_events(session, convert.events(result.progress))
    log.info("parcels with no scan became exceptions", parcels=result.recorded, days=days)
    return len(parcels)
