"""The OrderInsightsService gRPC API: order KPIs and an order's notifications."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.orders.v1 import insights_pb2, insights_pb2_grpc
from oms_platform.errors import NotFound, Violations
from oms_platform.pagination import PageTokenError, decode_page_token, encode_page_token
from sqlalchemy import Row, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders import kpis, kpis_rules
from oms_orders.kpis_rules import Granularity
from oms_orders.notifications_rules import Kind, Status
from oms_orders.tables import kpi_orders, notifications

SERVICE_NAME = insights_pb2.DESCRIPTOR.services_by_name["OrderInsightsService"].full_name

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

_GRANULARITY = {
    insights_pb2.GRANULARITY_DAY: Granularity.DAY,
    insights_pb2.GRANULARITY_WEEK: Granularity.WEEK,
    insights_pb2.GRANULARITY_MONTH: Granularity.MONTH,
}
_KIND = {
    Kind.CONFIRMATION: insights_pb2.NOTIFICATION_KIND_ORDER_CONFIRMATION,
    Kind.DISPATCH: insights_pb2.NOTIFICATION_KIND_DISPATCH,
    Kind.DELIVERY: insights_pb2.NOTIFICATION_KIND_DELIVERY,
    Kind.SURVEY: insights_pb2.NOTIFICATION_KIND_SURVEY,
}
_STATE = {
    Status.PENDING: insights_pb2.NOTIFICATION_STATE_PENDING,
    Status.SENT: insights_pb2.NOTIFICATION_STATE_SENT,
    Status.FAILED: insights_pb2.NOTIFICATION_STATE_FAILED,
}


class OrderInsightsServicer(insights_pb2_grpc.OrderInsightsServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def GetOrderKpis(
        self, request: insights_pb2.GetOrderKpisRequest, context: grpc.aio.ServicerContext
    ) -> insights_pb2.GetOrderKpisResponse:
        violations = Violations()
        start = _instant(request, "start_time", violations)
        end = _instant(request, "end_time", violations)
        violations.raise_if_any()
        granularity = _GRANULARITY.get(request.granularity)
        kpis_rules.check_range(violations, start, end, granularity)
        violations.raise_if_any()
        assert start is not None and end is not None and granularity is not None
        async with self._sessions.begin() as session:
            figures = await kpis.order_kpis(
                session, start=start, end=end, granularity=granularity,
                channel=request.channel or None, limit=kpis_rules.MAX_FIGURES,
            )
        kpis_rules.check_figures(violations, len(figures))
        violations.raise_if_any()
        return insights_pb2.GetOrderKpisResponse(kpis=[_kpis_to_proto(f) for f in figures])

    async def ListOrderNotifications(
        self,
        request: insights_pb2.ListOrderNotificationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> insights_pb2.ListOrderNotificationsResponse:
        violations = Violations()
        parent = kpis_rules.parse_order_name(request.parent)
        violations.require(parent is not None, "parent", 'must be "orders/{uuid}"')
        violations.require(request.page_size >= 0, "page_size", "must not be negative")
        after = _decode_token(request.page_token, request.parent, violations)
        violations.raise_if_any()
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        async with self._sessions.begin() as session:
            rows = (
                await session.execute(
                    select(notifications)
                    .where(notifications.c.order_name == parent, notifications.c.id > after)
                    .order_by(notifications.c.id)
                    .limit(size + 1)
                )
            ).all()
            if not rows and not after:
                known = await session.scalar(
                    select(exists().where(kpi_orders.c.order_name == parent))
                )
                if not known:
                    raise NotFound(f"{parent} not found", reason="ORDER_NOT_FOUND",
                                   metadata={"name": request.parent})
        page, more = rows[:size], len(rows) > size
        return insights_pb2.ListOrderNotificationsResponse(
            notifications=[_notification_to_proto(row) for row in page],
            next_page_token=_encode_token(request.parent, page[-1].id) if more else "",
        )


def _instant(
    request: insights_pb2.GetOrderKpisRequest, field: str, violations: Violations
) -> datetime | None:
    if not request.HasField(field):
        return None
    try:
        return kpis.instant(getattr(request, field))
    except ValueError:
        violations.add(field, "not a valid timestamp (years 1 to 9999)")
        return None


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromMicroseconds(round(seconds * 1_000_000))
    return duration


def _kpis_to_proto(figures: kpis.PeriodKpis) -> insights_pb2.OrderKpis:
    message = insights_pb2.OrderKpis(
        period_start_time=_timestamp(figures.period_start),
        period_end_time=_timestamp(figures.period_end),
        channel=figures.channel,
        orders=figures.orders,
        units_sold=figures.units_sold,
        units_returned=figures.units_returned,
        units_returned_by_reason=[
            insights_pb2.ReturnedUnits(
                reason=reason.value,  # type: ignore[arg-type]
                units=units,
                return_rate=kpis_rules.percent(units, figures.units_sold) or 0.0,
            )
            for reason, units in figures.units_returned_by_reason.items()
        ],
        orders_returned_wrong_item=figures.orders_wrong_item,
        orders_delivered=figures.orders_delivered,
        customers=figures.customers,
        sales_amount=[
            common_pb2.Money(currency_code=currency, amount=f"{amount:f}")
            for currency, amount in sorted(figures.sales_amount.items())
        ],
    )
    for name, value in (
        ("return_rate", kpis_rules.percent(figures.units_returned, figures.units_sold)),
        ("picking_accuracy", kpis_rules.percent(figures.orders - figures.orders_wrong_item,
                                                figures.orders)),
        ("purchase_frequency", kpis_rules.ratio(figures.orders, figures.customers)),
    ):
        if value is not None:
            setattr(message, name, value)
    if figures.lead_time_mean is not None and figures.lead_time_p90 is not None:
        message.lead_time_mean.CopyFrom(_duration(figures.lead_time_mean.total_seconds()))
        message.lead_time_p90.CopyFrom(_duration(figures.lead_time_p90.total_seconds()))
    return message


def _notification_to_proto(row: Row[Any]) -> insights_pb2.Notification:
    kind = Kind(row.kind)
    message = insights_pb2.Notification(
        name=f"{row.order_name}/notifications/{row.id}",
        kind=_KIND[kind],
        package=row.key if kind in (Kind.DISPATCH, Kind.DELIVERY) else "",
        recipient=row.recipient,
        state=_STATE[Status(row.status)],
        create_time=_timestamp(row.create_time),
        schedule_time=_timestamp(row.not_before),
        failed_attempts=row.attempts,
        last_error=row.last_error,
        message_id=row.message_id,
    )
    if row.send_time is not None:
        message.send_time.CopyFrom(_timestamp(row.send_time))
    return message


def _encode_token(parent: str, last_id: int) -> str:
    return encode_page_token([last_id], {"parent": parent})


def _decode_token(token: str, parent: str, violations: Violations) -> int:
    """The id after which the page starts (0 for the first page)."""
    try:
        after = decode_page_token(token, {"parent": parent})
        if after is None:
            return 0
        if len(after) == 1 and isinstance(after[0], int):
            return after[0]
    except PageTokenError:
        pass
    violations.add("page_token", "not a token of this listing")
    return 0
