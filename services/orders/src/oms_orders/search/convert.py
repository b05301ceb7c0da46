"""Between the contracts and a search: page tokens and the counts of CountOrders."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from oms.orders.v1 import orders_pb2
from oms_platform.errors import FieldViolation, InvalidArgument
from oms_platform.pagination import PageTokenError, decode_page_token, encode_page_token

from oms_orders.lifecycle.convert import status_to_proto
from oms_orders.lifecycle.domain import Order, OrderStatus
from oms_orders.search.domain import summarize


def counts_to_proto(counts: Mapping[OrderStatus, int]) -> orders_pb2.CountOrdersResponse:
    summary = summarize(counts)
    return orders_pb2.CountOrdersResponse(
        counts=[orders_pb2.StatusCount(status=status_to_proto(status), count=n)
                for status, n in sorted(counts.items(), key=lambda x: x[0].value)],
        payment_required=summary.payment_required,
        waiting_for_stock=summary.waiting_for_stock,
        ready_to_release=summary.ready_to_release,
        ready_to_ship=summary.ready_to_ship,
        on_hold=summary.on_hold,
        in_transit=summary.in_transit,
        total=summary.total,
    )


def page_token(last: Order, expression: str) -> str:
    return encode_page_token([last.create_time.isoformat(), str(last.id)],
                             {"filter": expression})


def after_of(token: str, expression: str) -> tuple[datetime, uuid.UUID] | None:
    """The (create_time, id) to continue after; INVALID_ARGUMENT on ``page_token`` for a
    token this list did not issue, whatever it holds."""
    try:
        after = decode_page_token(token, {"filter": expression})
    except PageTokenError as error:
        raise InvalidArgument([FieldViolation("page_token", str(error))]) from None
    if after is None:
        return None
    try:
        create_time, order_id = after
        return datetime.fromisoformat(create_time), uuid.UUID(order_id)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument([FieldViolation(
            "page_token", "not a page token of this list")]) from None
