"""Customer emails: enqueued by event handlers, sent over SMTP by a background task.

Enqueueing runs in the consumer's inbox transaction, after the KPI read model's handlers (it
reads the contact details and delivery state they wrote). Each email is one row of
``notifications`` with a unique (order, kind, key); the insert is ``ON CONFLICT DO NOTHING``,
so an event redelivered, or re-sent under a new event id, enqueues nothing new.

Sending: every replica runs a sender that takes due rows (``FOR UPDATE SKIP LOCKED``, so
replicas share the work and never take the same row), renders them, sends them over one SMTP
connection per batch and marks them sent in the same transaction. A 4xx reply or a
connection lost mid-batch is retried with exponential backoff up to ``notify_max_attempts``;
a 5xx reply (unknown mailbox, refused) fails the notification at once. Failures are logged
and kept with their last error. A mail server that cannot be reached at all counts against
no notification: the sender backs off and tries again, so an outage fails no email.

The one duplicate left: the mail server accepted an email and the service died before the
commit that marks it sent. The row is still pending and is sent again; the Message-ID is
derived from (order, kind, key) and identical on both copies, so a receiving system that
de-duplicates by Message-ID drops the second. Sending is at-least-once, not exactly-once.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosmtplib
import structlog
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.orders.v1 import events_pb2 as orders_events
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_platform.consumer import Subscription
from oms_platform.service import Runtime
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.insights import convert as insights_convert
from oms_orders.insights.convert import instant
from oms_orders.insights.domain import UnknownOrder
from oms_orders.notifications import store
from oms_orders.notifications.convert import Renderer
from oms_orders.notifications.domain import (
    Kind,
    Status,
    is_permanent,
    is_stale,
    message_id,
    retry_delay,
    safe_link,
    sender_domain,
)
from oms_orders.settings import NotificationSettings

log = structlog.get_logger(__name__)


def subscriptions(settings: NotificationSettings) -> list[Subscription]:
    """Handlers enqueueing emails; list them after
    :func:`oms_orders.insights.handlers.subscriptions`."""
    enqueue = Enqueuer(settings)
    return [
        Subscription(orders_events.OrderCreated, enqueue.on_order_created),
        Subscription(fulfilment_events.PackageShipped, enqueue.on_package_shipped),
        Subscription(shipping_events.ShipmentDelivered, enqueue.on_shipment_delivered),
    ]


@dataclass(frozen=True)
class Email:
    order_name: str
    kind: Kind
    key: str
    recipient: str
    context: dict[str, Any]
    due: datetime


class Enqueuer:
    def __init__(self, settings: NotificationSettings) -> None:
        self._settings = settings
        self._domain = sender_domain(settings.mail_from)

    async def on_order_created(
        self, session: AsyncSession, event: orders_events.OrderCreated
    ) -> None:
        person = insights_convert.order_contact(event)
        currency, amount = insights_convert.order_total(event)
        await self._enqueue(session, [Email(
            order_name=event.order,
            kind=Kind.CONFIRMATION,
            key="",
            recipient=person.email,
            context={
                "customer_name": person.name,
                "order_number": event.external_order_id,
                "channel": event.channel,
                "lines": [
                    {"sku": line.sku, "quantity": line.quantity,
                     "unit_price": line.unit_price.amount}
                    for line in event.lines
                ],
                "total": {"amount": f"{amount:f}", "currency_code": currency},
            },
            # Due when the order reached us: a channel may hand over orders placed days ago.
            due=instant(event.create_time) or insights_convert.place_time(event),
        )])

    async def on_package_shipped(
        self, session: AsyncSession, event: fulfilment_events.PackageShipped
    ) -> None:
        items: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in event.lines:
            items[line.order].append({"sku": line.sku, "quantity": line.quantity})
        contacts = await store.contacts(session, list(items), "PackageShipped")
        ship_time = instant(event.ship_time) or datetime.now(UTC)
        await self._enqueue(session, [
            Email(
                order_name=order_name,
                kind=Kind.DISPATCH,
                key=event.package,
                recipient=contacts[order_name].email,
                context={
                    "customer_name": contacts[order_name].customer_name,
                    "order_number": contacts[order_name].external_order_id,
                    "carrier": event.carrier,
                    "carrier_service": event.carrier_service,
                    "tracking_number": event.tracking_number,
                    "tracking_url": safe_link(event.tracking_url),
                    "items": order_items,
                },
                due=ship_time,
            )
            for order_name, order_items in items.items()
        ])

    async def on_shipment_delivered(
        self, session: AsyncSession, event: shipping_events.ShipmentDelivered
    ) -> None:
        orders = await store.delivered_orders(session, event.package)
        if not orders:
            raise UnknownOrder(f"ShipmentDelivered of {event.package} before its PackageShipped")
        emails = []
        for order in orders:
            common = {"customer_name": order.customer_name,
                      "order_number": order.external_order_id}
            emails.append(Email(
                order_name=order.order_name,
                kind=Kind.DELIVERY,
                key=event.package,
                recipient=order.email,
                context={**common, "carrier": order.carrier or event.carrier,
                         "tracking_number": order.tracking_number or event.tracking_number},
                due=order.deliver_time or instant(event.deliver_time) or datetime.now(UTC),
            ))
            if order.delivered_time is not None:
                # The whole order has arrived: ask how it went, some days later.
                survey_url = self._settings.survey_url.replace(
                    "{order}", order.order_name.rpartition("/")[2]
                )
                emails.append(Email(
                    order_name=order.order_name,
                    kind=Kind.SURVEY,
                    key="",
                    recipient=order.email,
                    context={**common, "survey_url": safe_link(survey_url)},
                    due=order.delivered_time + self._settings.survey_delay,
                ))
        await self._enqueue(session, emails)

    async def _enqueue(self, session: AsyncSession, emails: Sequence[Email]) -> None:
        now = datetime.now(UTC)
        rows = []
        for email in emails:
            if not email.recipient:
                log.info("no email address, notification skipped",
                         order=email.order_name, kind=email.kind.value)
            elif is_stale(email.due, now, self._settings.stale_after):
                log.info("notification long overdue (replayed event?), skipped",
                         order=email.order_name, kind=email.kind.value, due=email.due.isoformat())
            else:
                rows.append({
                    "order_name": email.order_name,
                    "kind": email.kind.value,
                    "key": email.key,
                    "recipient": email.recipient,
                    "context": email.context,
                    "status": Status.PENDING.value,
                    "not_before": max(email.due, now),
                    "message_id": message_id(email.order_name, email.kind, email.key,
                                             self._domain),
                    "create_time": now,
                })
        await store.enqueue(session, rows)


# --- Sending ---------------------------------------------------------------------------------


async def run_sender(runtime: Runtime) -> None:
    """The background task: sends due notifications until cancelled."""
    settings = NotificationSettings()
    if not settings.smtp_host:
        log.warning("no SMTP host configured (OMS_ORDERS_SMTP_HOST): customer notifications "
                    "are enqueued but not sent")
        return
    sender = Sender(runtime.sessions, settings)
    log.info("notification sender started", smtp=f"{settings.smtp_host}:{settings.smtp_port}")
    failures = 0
    while True:
        try:
            handled = await sender.send_due()
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as error:
            failures += 1
            delay = min(0.5 * 2**failures, 60.0)
            log.warning("notification sender failed, retrying", error=repr(error), delay=delay)
            await asyncio.sleep(delay)
            continue
        if handled < settings.notify_batch_size:
            await asyncio.sleep(settings.notify_poll_seconds)


class Sender:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: NotificationSettings
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._renderer = Renderer()

    async def send_due(self) -> int:
        """Sends one batch of due notifications; returns how many were attempted.

        The rows stay locked while they are sent, so no other replica takes them; a batch is
        small, which keeps that transaction short.
        """
        async with self._sessions.begin() as session:
            rows = await store.take_due(session, self._settings.notify_batch_size)
            if not rows:
                return 0
            outcomes = await self._send(rows)
            await store.mark_sent(session, [row.id for row, error in outcomes if error is None])
            await store.mark_failed(session, [
                self._failure(row, error) for row, error in outcomes if error is not None])
        for row, error in outcomes:
            if error is None:
                log.info("notification sent", order=row.order_name, kind=row.kind,
                         message_id=row.message_id)
        return len(rows)

    async def _send(
        self, rows: Sequence[Row[Any]]
    ) -> list[tuple[Row[Any], _Failure | None]]:
        settings = self._settings
        outcomes: list[tuple[Row[Any], _Failure | None]] = []
        messages = []
        for row in rows:
            try:
                messages.append((row, self._renderer.message(
                    Kind(row.kind), row.context, mail_from=settings.mail_from,
                    recipient=row.recipient, message_id=row.message_id,
                    date=datetime.now(UTC),
                )))
            except Exception as error:  # a template or context bug: no retry will fix it
                outcomes.append((row, _Failure(repr(error), permanent=True)))
        if not messages:
            return outcomes
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password.get_secret_value() or None,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as error:
            # The mail server is unreachable, not these emails at fault: nothing is counted
            # against them (an outage must not use up their attempts); the sender backs off.
            raise MailServerUnavailable(repr(error)) from error
        try:
            for row, message in messages:
                try:
                    await client.send_message(message)
                    outcomes.append((row, None))
                except (aiosmtplib.SMTPException, OSError) as error:
                    outcomes.append((row, _failure_of(error)))
                    if not client.is_connected:
                        await client.connect()
        except (aiosmtplib.SMTPException, OSError) as error:
            # Lost the connection and could not get it back: the rest wait for a retry.
            failure = _failure_of(error)
            done = {id(row) for row, _ in outcomes}
            outcomes += [(row, failure) for row, _ in messages if id(row) not in done]
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        return outcomes

    def _failure(self, row: Row[Any], failure: _Failure) -> dict[str, Any]:
        settings = self._settings
        attempts = row.attempts + 1
        give_up = failure.permanent or attempts >= settings.notify_max_attempts
        if give_up:
            log.error("notification failed, giving up", order=row.order_name, kind=row.kind,
                      attempts=attempts, error=failure.error)
        else:
            log.warning("notification not sent, will retry", order=row.order_name,
                        kind=row.kind, attempts=attempts, error=failure.error)
        delay = retry_delay(attempts, settings.notify_retry_base, settings.notify_retry_cap)
        return {
            "id": row.id,
            "status": (Status.FAILED if give_up else Status.PENDING).value,
            "attempts": attempts,
            "error": failure.error[:2000],
            "not_before": row.not_before if give_up else datetime.now(UTC) + delay,
        }


class MailServerUnavailable(Exception):
    """The SMTP connection could not be opened; the batch is left as it was."""


@dataclass(frozen=True)
class _Failure:
    error: str
    permanent: bool


def _failure_of(error: BaseException) -> _Failure:
    code: int | None = None
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        code = min(refused.code for refused in error.recipients)
    elif isinstance(error, aiosmtplib.SMTPResponseException):
        code = error.code
    return _Failure(repr(error), permanent=is_permanent(code))
