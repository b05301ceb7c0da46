"""Rules of the order KPIs, free of gRPC and SQL: who a customer is, periods, rates, return
reasons, and the figures of one period."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
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


class UnknownOrder(Exception):
    """An event names an order whose OrderCreated has not been handled yet: retry later."""


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


class Reason(enum.Enum):
    """Return reasons as stored: the proto enum names without their prefix."""

    UNSPECIFIED = 0
    WRONG_ITEM = 1
    DAMAGED = 2
    DEFECTIVE = 3
    NOT_AS_DESCRIBED = 4
    SIZE_OR_FIT = 5
    ARRIVED_LATE = 6
    NO_LONGER_NEEDED = 7
    OTHER = 8

    @classmethod
    def of(cls, number: int) -> Reason:
        try:
            return cls(number)
        except ValueError:
            return cls.OTHER


@dataclass
class PeriodKpis:
    """The figures of one period and channel, before they become protobuf."""

    period_start: datetime
    period_end: datetime
    channel: str
    orders: int = 0
    units_sold: int = 0
    orders_wrong_item: int = 0
    orders_delivered: int = 0
    lead_time_mean: timedelta | None = None
    lead_time_p90: timedelta | None = None
    customers: int = 0
    units_returned_by_reason: dict[Reason, int] = field(default_factory=dict)
    sales_amount: dict[str, Decimal] = field(default_factory=dict)

    @property
    def units_returned(self) -> int:
        return sum(self.units_returned_by_reason.values())


@dataclass(frozen=True)
class PlacedLine:
    line_id: str
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class PlacedOrder:
    """What the read model keeps of an order when it is placed."""

    name: str
    channel: str
    external_order_id: str
    contact: Contact
    currency_code: str
    amount: Decimal
    place_time: datetime
    lines: tuple[PlacedLine, ...]

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)


@dataclass(frozen=True)
class ShippedPackage:
    """A package as the read model keeps it: its units per order."""

    package: str
    carrier: str
    carrier_service: str
    tracking_number: str
    tracking_url: str
    units: Mapping[str, int]
    ship_time: datetime
