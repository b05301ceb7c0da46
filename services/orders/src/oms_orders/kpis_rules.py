"""Rules of the order KPIs, free of gRPC and SQL: who a customer is, periods, rates."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from oms_platform.errors import Violations

MAX_RANGE = timedelta(days=3660)
"""The longest KPI range one request may ask for (about ten years)."""
MAX_PERIODS = 400
"""Periods one request may span: a year and a month of days, seven years of weeks, every
month of ``MAX_RANGE``. The response has no pages (its contract has no page token), so the
request is bounded instead."""
MAX_FIGURES = 5000
"""Entries (periods x channels) one response may hold, about 1.5 MB: beyond it the caller
names a channel or asks for fewer periods."""


class Granularity(enum.Enum):
    """A KPI period; the value is PostgreSQL's ``date_trunc`` field, which works in UTC here."""

    DAY = "day"
    WEEK = "week"  # ISO weeks: from Monday
    MONTH = "month"


@dataclass(frozen=True)
class Contact:
    """Who placed an order and where to write to them."""

    name: str
    email: str
    customer_key: str


def contact(
    *,
    order_name: str,
    channel: str,
    customer_name: str,
    customer_email: str,
    external_customer_id: str,
    recipient: str,
    address_email: str,
) -> Contact:
    """The order's contact: the customer's own details first, then the shipping address's.

    The customer key counts one buyer across orders for purchase frequency: the email
    (case-insensitive), else the channel's customer id within its channel, else the order
    itself (a guest we cannot recognise counts as a customer of one order). The migration
    that backfills existing orders computes the same key in SQL.
    """
    email = (customer_email or address_email).strip()
    if email:
        key = email.lower()
    elif external_customer_id:
        key = f"channel:{channel}/{external_customer_id}"
    else:
        key = f"order:{order_name}"
    return Contact(name=(customer_name or recipient).strip(), email=email, customer_key=key)


def period_start(at: datetime, granularity: Granularity) -> datetime:
    """The start of the UTC period ``at`` falls in (the same bucketing as the SQL)."""
    at = at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity is Granularity.DAY:
        return day
    if granularity is Granularity.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(start: datetime, granularity: Granularity) -> datetime:
    """The end (exclusive) of the period that begins at ``start``."""
    if granularity is Granularity.DAY:
        return start + timedelta(days=1)
    if granularity is Granularity.WEEK:
        return start + timedelta(weeks=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def percent(part: int, whole: int) -> float | None:
    """``part / whole * 100``, or None when there is no whole to divide by."""
    return part / whole * 100 if whole else None


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def cancelled_amount(lines: dict[str, Decimal], cancelled: dict[str, int]) -> Decimal:
    """The value of cancelled units, by line id, at their unit prices (exact decimals)."""
    return sum((lines[line_id] * units for line_id, units in cancelled.items()
                if line_id in lines), Decimal(0))


def check_range(
    violations: Violations, start: datetime | None, end: datetime | None,
    granularity: Granularity | None,
) -> None:
    """Adds a violation for each thing wrong with a KPI request's range."""
    violations.require(start is not None, "start_time", "required")
    violations.require(end is not None, "end_time", "required")
    if start is not None and end is not None:
        if (violations.require(end > start, "end_time", "must be after start_time")
                and violations.require(end - start <= MAX_RANGE, "end_time",
                                       f"at most {MAX_RANGE.days} days after start_time")
                and granularity is not None):
            violations.require(
                period_count(start, end, granularity) <= MAX_PERIODS, "end_time",
                f"at most {MAX_PERIODS} {granularity.value}s after start_time; ask for a "
                "coarser granularity")
    violations.require(granularity is not None, "granularity", "required: DAY, WEEK or MONTH")


def period_count(start: datetime, end: datetime, granularity: Granularity) -> int:
    """How many periods ``[start, end)`` touches (counted up to one beyond ``MAX_PERIODS``)."""
    count, at = 0, period_start(start, granularity)
    while at < end and count <= MAX_PERIODS:
        count, at = count + 1, period_end(at, granularity)
    return count


def check_figures(violations: Violations, count: int) -> None:
    violations.require(
        count <= MAX_FIGURES, "channel",
        f"more than {MAX_FIGURES} periods x channels: name a channel or ask for fewer periods")


def parse_order_name(name: str) -> str | None:
    """``name`` if it is "orders/{uuid}" in canonical form, else None."""
    prefix, _, raw = name.partition("/")
    if prefix != "orders":
        return None
    try:
        return name if str(uuid.UUID(raw)) == raw else None
    except ValueError:
        return None
