"""Turning a stored notification into an email, from the templates in ``templates/``, and
into its protobuf for the listing.

Each kind has three templates: ``KIND.subject.txt``, ``KIND.txt`` (the plain-text part) and
``KIND.html`` (the HTML part, autoescaped: names, SKUs and carrier data come from outside).
Undefined variables are errors, so a template and its context cannot drift apart silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import jinja2
from oms.orders.v1 import insights_pb2
from oms_platform.values import timestamp
from sqlalchemy import Row

from oms_orders.notifications.domain import Kind, Status

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


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Renderer:
    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("oms_orders.notifications", "templates"),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    def render(self, kind: Kind, context: dict[str, Any]) -> Rendered:
        subject = self._env.get_template(f"{kind.value}.subject.txt").render(context)
        return Rendered(
            # One line, whatever the data held: a newline in a header would be refused.
            subject=" ".join(subject.split()),
            text=self._env.get_template(f"{kind.value}.txt").render(context),
            html=self._env.get_template(f"{kind.value}.html").render(context),
        )

    def message(
        self,
        kind: Kind,
        context: dict[str, Any],
        *,
        mail_from: str,
        recipient: str,
        message_id: str,
        date: datetime,
    ) -> EmailMessage:
        rendered = self.render(kind, context)
        message = EmailMessage()
        message["From"] = mail_from
        message["To"] = recipient
        message["Subject"] = rendered.subject
        message["Message-ID"] = message_id
        message["Date"] = format_datetime(date)
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message


def notification_to_proto(row: Row[Any]) -> insights_pb2.Notification:
    kind = Kind(row.kind)
    message = insights_pb2.Notification(
        name=f"{row.order_name}/notifications/{row.id}",
        kind=_KIND[kind],
        package=row.key if kind in (Kind.DISPATCH, Kind.DELIVERY) else "",
        recipient=row.recipient,
        state=_STATE[Status(row.status)],
        create_time=timestamp(row.create_time),
        schedule_time=timestamp(row.not_before),
        failed_attempts=row.attempts,
        last_error=row.last_error,
        message_id=row.message_id,
    )
    if row.send_time is not None:
        message.send_time.CopyFrom(timestamp(row.send_time))
    return message
