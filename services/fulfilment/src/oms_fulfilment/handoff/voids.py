"""The void sweep: labels of packages cancelled after their label purchase was tried are
voided at shipping, outside any transaction (a carrier call must not hold a row lock).

A cancellation marks a sealed package ``void_pending`` in the event handler's transaction;
a purchase that completes after the cancellation marks it again with the label it got. The
sweep asks shipping for every label of the package and voids those not voided, then clears
the mark. Shipping unreachable leaves the mark for the next pass; a refusal (the label is on
a closed manifest already) is recorded on the package as its ``hand_off_error`` for a person
to settle with the carrier, and not retried."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.handoff.client import LabelRefused, Shipping, ShippingUnavailable
from oms_fulfilment.packing.convert import package_name
from oms_fulfilment.tables import packages

log = structlog.get_logger(__name__)

BATCH = 50


async def void_pending(sessions: async_sessionmaker[AsyncSession], shipping: Shipping,
                       *, batch: int = BATCH) -> int:
    """One pass over at most ``batch`` packages waiting for their labels to be voided; how
    many were settled."""
    async with sessions.begin() as session:
        waiting = (await session.execute(
            select(packages.c.id, packages.c.fulfilment_order_id, packages.c.update_time)
            .where(packages.c.void_pending).order_by(packages.c.update_time).limit(batch)
        )).all()
    settled = 0
    for package_id, order_id, seen in waiting:
        name = package_name(order_id, package_id)
        try:
            voided = await shipping.void_labels_of(name)
        except ShippingUnavailable as error:
            log.warning("label void postponed", package=name, error=str(error))
            continue
        except LabelRefused as error:
            log.warning("label void refused", package=name, error=str(error))
            await _settle(sessions, package_id, seen, error=str(error)[:1000])
            settled += 1
            continue
        await _settle(sessions, package_id, seen)
        settled += 1
        log.info("labels of a cancelled package voided", package=name, labels=voided)
    return settled


async def _settle(sessions: async_sessionmaker[AsyncSession], package_id: uuid.UUID,
                  seen: datetime, *, error: str = "") -> None:
    """Clears the mark, unless the package changed since it was read (a purchase that
    completed meanwhile marked it again with a new label: the next pass voids that)."""
    now = datetime.now(UTC)
    values: dict[str, object] = {"void_pending": False, "update_time": now}
    if error:
        values["hand_off_error"] = error
    else:
        values["void_time"] = now
    async with sessions.begin() as session:
        await session.execute(update(packages).where(
            packages.c.id == package_id, packages.c.update_time == seen).values(**values))
