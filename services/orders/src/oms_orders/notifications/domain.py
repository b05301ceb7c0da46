"""Rules of customer notifications, free of SMTP and SQL: kinds, identity, timing, retries."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

MAX_PAGE_SIZE = 200
"""Notifications per ListOrderNotifications page; a larger ``page_size`` is read as this."""

_MESSAGE_ID_NAMESPACE = uuid.UUID("8f6c1d2e-5b7a-4c3e-9a0f-6d2b1e4c7a90")


class Kind(enum.Enum):
    CONFIRMATION = "CONFIRMATION"
    DISPATCH = "DISPATCH"
    DELIVERY = "DELIVERY"
    SURVEY = "SURVEY"


class Status(enum.Enum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"


def message_id(order_name: str, kind: Kind, key: str, domain: str) -> str:
    """The RFC 5322 Message-ID of one notification: the same on every attempt.

    A crash between the mail server's acceptance and the commit that marks the notification
    sent makes the next attempt send it again; with the same Message-ID a receiving system
    can recognise the copy.
    """
    token = uuid.uuid5(_MESSAGE_ID_NAMESPACE, f"{order_name}\x00{kind.value}\x00{key}")
    return f"<{token}@{domain or 'localhost'}>"


def sender_domain(mail_from: str) -> str:
    """The domain of the From address ("Shop <no-reply@shop.example>" → "shop.example")."""
    address = mail_from.rsplit("<", 1)[-1].rstrip(">").strip()
    _, at, domain = address.rpartition("@")
    return domain if at and domain else "localhost"


def is_stale(due: datetime, now: datetime, stale_after: timedelta) -> bool:
    """Whether an email due at ``due`` is too old to be worth sending at ``now``.

    Events are replayed now and then (a new durable consumer reads its stream from the
    start, an operator replays a day); a confirmation weeks after the order would only
    confuse the customer, so such emails are not enqueued at all.
    """
    return due < now - stale_after


def retry_delay(failed_attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    """Exponential backoff after the ``failed_attempts``-th failure (1, 2, …), capped."""
    return min(base * 2 ** (max(failed_attempts, 1) - 1), cap)


def is_permanent(smtp_code: int | None) -> bool:
    """A 5xx reply will not change on a retry (unknown mailbox, refused); 4xx and lost
    connections might."""
    return smtp_code is not None and 500 <= smtp_code < 600


def safe_link(url: str) -> str:
    """``url`` if it is an absolute http(s) link, else "" (a ``javascript:`` or relative link
    from a carrier must not end up as a clickable link in an email)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return url.strip()
    return ""
