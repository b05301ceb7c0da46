"""Rules of the order KPIs, free of gRPC and SQL: who a customer is, periods, rates, return
and cancellation reasons, the money figures, and the figures of one period."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from oms_platform.errors import Violations
from oms_platform.money import Money

MAX_RANGE = timedelta(days=3660)
"""The longest KPI range one request may ask for (about ten years)."""
MAX_PERIODS = 400
"""Periods one request may span: a year and a month of days, seven years of weeks, every
month of ``MAX_RANGE``. The response has no pages (its contract has no page token), so the
request is bounded instead."""
MAX_FIGURES = 5000
"""Entries (periods x (total + channels)) one response may hold, about 3 MB: beyond it the
caller names channels, asks for the totals only, or asks for fewer periods."""
MAX_CHANNELS = 100
"""Channels one request may name."""
MAX_CHANNEL_LENGTH = 100
MAX_CANCEL_REASONS = 20
"""Cancellation reasons an entry lists on their own (the most units first); the others are
summed under an empty reason. The reason is free text, so it is bounded here."""
MAX_EXPORT_BYTES = 3 * 1024 * 1024
"""The largest CSV export, below gRPC's default 4 MiB message."""


class Breakdown(enum.Enum):
    """Which entries a request returns per period."""

    BOTH = "both"
    TOTAL = "total"
    CHANNEL = "channel"


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
        f"more than {MAX_FIGURES} periods x channels: name channels, ask for the totals "
        "only, or ask for fewer periods")


def check_channels(violations: Violations, channel: str, channels: list[str]) -> None:
    """``channel`` and ``channels`` exclude each other; ``channels`` is bounded."""
    if channel:
        violations.require(len(channel) <= MAX_CHANNEL_LENGTH, "channel",
                           f"at most {MAX_CHANNEL_LENGTH} characters")
        violations.require(not channels, "channels", "not with channel")
    if violations.require(len(channels) <= MAX_CHANNELS, "channels",
                          f"at most {MAX_CHANNELS} channels"):
        for index, name in enumerate(channels):
            violations.require(0 < len(name) <= MAX_CHANNEL_LENGTH, f"channels[{index}]",
                               f"1 to {MAX_CHANNEL_LENGTH} characters")


def seconds_stat(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=float(value))


@dataclass(frozen=True)
class CancelledUnits:
    reason: str
    orders: int
    units: int


def top_reasons(rows: list[CancelledUnits], limit: int = MAX_CANCEL_REASONS,
                ) -> list[CancelledUnits]:
    """The ``limit`` reasons with the most units (ties by reason), then one entry with an
    empty reason summing the rest (its orders summed over those reasons)."""
    ranked = sorted(rows, key=lambda row: (-row.units, row.reason))
    kept, rest = ranked[:limit], ranked[limit:]
    if rest:
        kept.append(CancelledUnits("", sum(r.orders for r in rest), sum(r.units for r in rest)))
    return kept


@dataclass
class CurrencyFigures:
    """The money of one entry in one currency."""

    orders: int = 0
    sales: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)


def money(currency: str, amount: Decimal) -> Money:
    return Money.of(currency, amount)


def net_sales(figures: CurrencyFigures) -> Decimal:
    return figures.sales - figures.refunded


def average_order_value(currency: str, figures: CurrencyFigures) -> Money | None:
    """Sales per order in that currency, in its minor units (half-even); None without one."""
    if not figures.orders:
        return None
    return Money.of(currency, figures.sales / figures.orders)


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
    """The figures of one period and channel (``channel`` empty: the channels asked for
    together), before they become protobuf; each is defined in insights.proto."""

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
    currencies: dict[str, CurrencyFigures] = field(default_factory=dict)
    orders_placed: int = 0
    units_ordered: int = 0
    units_cancelled: int = 0
    orders_cancelled: int = 0
    cancellations_by_reason: list[CancelledUnits] = field(default_factory=list)
    units_shipped: int = 0
    orders_shipped_complete: int = 0
    orders_shipped: int = 0
    orders_split: int = 0
    orders_due: int = 0
    orders_on_time_in_full: int = 0
    orders_fully_shipped: int = 0
    order_to_ship_mean: timedelta | None = None
    order_to_ship_p90: timedelta | None = None
    ship_to_delivery_mean: timedelta | None = None
    ship_to_delivery_p90: timedelta | None = None
    orders_returned: int = 0
    units_pack_verified: int = 0
    units_pack_refused: int = 0

    @property
    def units_returned(self) -> int:
        return sum(self.units_returned_by_reason.values())

    @property
    def rates(self) -> dict[str, float | None]:
        """Every rate, by its name in the contract (None: no denominator)."""
        return {
            "return_rate": percent(self.units_returned, self.units_sold),
            "picking_accuracy": percent(self.orders - self.orders_wrong_item, self.orders),
            "purchase_frequency": ratio(self.orders, self.customers),
            "order_cancellation_rate": percent(self.orders_cancelled, self.orders_placed),
            "unit_cancellation_rate": percent(self.units_cancelled, self.units_ordered),
            "fill_rate": percent(self.units_shipped, self.units_ordered),
            "order_fill_rate": percent(self.orders_shipped_complete, self.orders_placed),
            "split_rate": percent(self.orders_split, self.orders_shipped),
            "on_time_in_full": percent(self.orders_on_time_in_full, self.orders_due),
            "order_return_rate": percent(self.orders_returned, self.orders),
            "scanned_picking_accuracy": percent(
                self.units_pack_verified, self.units_pack_verified + self.units_pack_refused),
        }

    @property
    def durations(self) -> dict[str, timedelta | None]:
        return {
            "lead_time_mean": self.lead_time_mean, "lead_time_p90": self.lead_time_p90,
            "order_to_ship_mean": self.order_to_ship_mean,
            "order_to_ship_p90": self.order_to_ship_p90,
            "ship_to_delivery_mean": self.ship_to_delivery_mean,
            "ship_to_delivery_p90": self.ship_to_delivery_p90,
        }

    @property
    def counts(self) -> dict[str, int]:
        """Every count, by its name in the contract, in the contract's order."""
        return {
            "orders": self.orders, "units_sold": self.units_sold,
            "units_returned": self.units_returned,
            "orders_returned_wrong_item": self.orders_wrong_item,
            "orders_delivered": self.orders_delivered, "customers": self.customers,
            "orders_placed": self.orders_placed, "units_ordered": self.units_ordered,
            "units_cancelled": self.units_cancelled, "orders_cancelled": self.orders_cancelled,
            "units_shipped": self.units_shipped,
            "orders_shipped_complete": self.orders_shipped_complete,
            "orders_shipped": self.orders_shipped, "orders_split": self.orders_split,
            "orders_due": self.orders_due, "orders_on_time_in_full": self.orders_on_time_in_full,
            "orders_fully_shipped": self.orders_fully_shipped,
            "orders_returned": self.orders_returned,
            "units_pack_verified": self.units_pack_verified,
            "units_pack_refused": self.units_pack_refused,
        }


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
    node_id: str
    carrier: str
    carrier_service: str
    tracking_number: str
    tracking_url: str
    units: Mapping[str, int]
    ship_time: datetime


@dataclass(frozen=True)
class PackCheck:
    """The packing station's scans of one order line in one parcel."""

    order: str
    line_id: str
    units_verified: int
    units_refused: int
