"""The delivery promise, pure: the day a carrier service collects a parcel at an origin (its
cut-off in the origin's time zone, its pickup days, the origin country's public holidays)
and the day it arrives (transit business days, skipping the destination's holidays)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays

from oms_shipping.carriers.domain import CarrierService, Origin
from oms_shipping.rating.cards import NotRated

# Subdivision whose holidays stand for the country when an address names none: the
# `holidays` package gives only the holidays common to all nations of GB without one, which
# would ship on England's bank holidays.
DEFAULT_SUBDIVISIONS: Mapping[str, str] = {"GB": "ENG"}


@functools.lru_cache(maxsize=256)
def public_holidays(country: str, subdivision: str = "") -> holidays.HolidayBase | frozenset[date]:
    """A country's public holidays (years filled in as they are asked for); none for a
    country the `holidays` package does not know."""
    subdiv = subdivision or DEFAULT_SUBDIVISIONS.get(country)
    try:
        return holidays.country_holidays(country, subdiv=subdiv)
    except NotImplementedError:
        if subdivision:
            return public_holidays(country)
        return frozenset()


def ship_date(ready_time: datetime, origin: Origin, service: CarrierService) -> date:
    """The day a parcel ready at ``ready_time`` is collected: that day at the origin (in its
    time zone) when ready by the cut-off (the service's, else the origin's), else the next;
    then the first of the service's pickup days that is not a public holiday of the origin's
    country."""
    local = ready_time.astimezone(ZoneInfo(origin.time_zone))
    cutoff = service.cutoff_time or origin.cutoff_time
    day = local.date()
    if cutoff is not None and local.time() > cutoff:
        day += timedelta(days=1)
    days_off = public_holidays(origin.country, origin.subdivision)
    pickup = service.pickup_weekdays
    for _ in range(366):
        if day.weekday() in pickup and day not in days_off:
            return day
        day += timedelta(days=1)
    raise NotRated(f"service {service.code} has no pickup day at {origin.node_id}")


@functools.lru_cache(maxsize=4096)
def delivery_date(shipped: date, transit_days: int, country: str) -> date:
    """``transit_days`` business days after ``shipped``: weekends and the destination
    country's public holidays do not count."""
    days_off = public_holidays(country)
    day = shipped
    left = transit_days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in days_off:
            left -= 1
    return day
