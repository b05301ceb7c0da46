"""Notification rules and templates, without a mail server or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from oms_orders.notifications.convert import Renderer
from oms_orders.notifications.domain import (
    Kind,
    is_permanent,
    is_stale,
    message_id,
    retry_delay,
    safe_link,
    sender_domain,
)
from oms_orders.settings import NotificationSettings

ORDER = "orders/6f1c1b1e-8a44-4c4e-9d1e-2f4b9f3e7a10"


def test_a_notification_keeps_one_message_id_and_others_get_their_own() -> None:
    first = message_id(ORDER, Kind.DISPATCH, "packages/1", "shop.test")
    assert first == message_id(ORDER, Kind.DISPATCH, "packages/1", "shop.test")
    assert first.startswith("<") and first.endswith("@shop.test>")
    others = {
        message_id(ORDER, Kind.DISPATCH, "packages/2", "shop.test"),
        message_id(ORDER, Kind.DELIVERY, "packages/1", "shop.test"),
        message_id(ORDER.replace("6f", "7f"), Kind.DISPATCH, "packages/1", "shop.test"),
    }
    assert first not in others and len(others) == 3


@pytest.mark.parametrize(("mail_from", "domain"), [
    ("Shop <no-reply@shop.example>", "shop.example"),
    ("orders@example.test", "example.test"),
    ("nobody", "localhost"),
])
def test_the_message_id_domain_is_the_senders(mail_from: str, domain: str) -> None:
    assert sender_domain(mail_from) == domain


def test_retries_back_off_exponentially_up_to_a_cap() -> None:
    base, cap = timedelta(seconds=30), timedelta(minutes=5)
    assert [retry_delay(n, base, cap).total_seconds() for n in range(1, 7)] == [
        30, 60, 120, 240, 300, 300
    ]


@pytest.mark.parametrize(("code", "permanent"), [
    (550, True), (553, True), (451, False), (421, False), (None, False)
])
def test_only_5xx_replies_are_permanent(code: int | None, permanent: bool) -> None:
    assert is_permanent(code) is permanent


def test_emails_due_long_ago_are_stale() -> None:
    now = datetime(2026, 3, 10, tzinfo=UTC)
    assert is_stale(now - timedelta(days=4), now, timedelta(days=3))
    assert not is_stale(now - timedelta(days=2), now, timedelta(days=3))
    assert not is_stale(now + timedelta(days=7), now, timedelta(days=3))  # a future survey


@pytest.mark.parametrize(("url", "kept"), [
    ("https://track.example/?n=1Z&x=1", True),
    ("http://track.example/1Z", True),
    ("javascript:alert(1)", False),
    ("/relative/path", False),
    ("", False),
])
def test_only_absolute_web_links_are_kept(url: str, kept: bool) -> None:
    assert safe_link(url) == (url if kept else "")


def test_the_survey_waits_seven_days_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMS_ORDERS_SURVEY_DELAY", raising=False)
    monkeypatch.delenv("OMS_ORDERS_SMTP_HOST", raising=False)
    settings = NotificationSettings()
    assert settings.survey_delay == timedelta(days=7)
    assert settings.smtp_host == ""  # sending is off until a mail server is configured
    monkeypatch.setenv("OMS_ORDERS_SURVEY_DELAY", "P3DT12H")
    assert NotificationSettings().survey_delay == timedelta(days=3, hours=12)


CONTEXTS = {
    Kind.CONFIRMATION: {
        "customer_name": "Ada", "order_number": "#1001", "channel": "shop",
        "lines": [{"sku": "SKU-MUG", "quantity": 2, "unit_price": "19.99"}],
        "total": {"amount": "39.98", "currency_code": "EUR"},
    },
    Kind.DISPATCH: {
        "customer_name": "Ada", "order_number": "#1001", "carrier": "ups",
        "carrier_service": "ups_ground", "tracking_number": "1Z",
        "tracking_url": "https://track.example/?n=1Z&lang=en",
        "items": [{"sku": "SKU-MUG", "quantity": 2}],
    },
    Kind.DELIVERY: {"customer_name": "Ada", "order_number": "#1001", "carrier": "ups",
                    "tracking_number": "1Z"},
    Kind.SURVEY: {"customer_name": "Ada", "order_number": "#1001", "survey_url": ""},
}


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_renders_a_subject_a_text_and_an_html_part(kind: Kind) -> None:
    rendered = Renderer().render(kind, CONTEXTS[kind])
    assert "#1001" in rendered.subject and "\n" not in rendered.subject
    assert "#1001" in rendered.text
    assert "#1001" in rendered.html and rendered.html.lstrip().startswith("<!DOCTYPE html>")


def test_html_escapes_what_came_from_outside_and_text_does_not() -> None:
    context = {**CONTEXTS[Kind.DISPATCH], "customer_name": '<script>x</script>',
               "order_number": "#1\nBcc: victim@example.test"}
    rendered = Renderer().render(Kind.DISPATCH, context)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;x&lt;/script&gt;" in rendered.html
    assert 'href="https://track.example/?n=1Z&amp;lang=en"' in rendered.html
    assert "Hello <script>x</script>," in rendered.text
    # A line break in the data cannot add a header.
    assert rendered.subject == "Your order #1 Bcc: victim@example.test is on its way"


def test_a_missing_template_variable_is_an_error_not_a_blank() -> None:
    context = dict(CONTEXTS[Kind.DELIVERY])
    del context["carrier"]
    with pytest.raises(Exception, match="carrier"):
        Renderer().render(Kind.DELIVERY, context)


def test_the_email_carries_its_headers_and_both_parts() -> None:
    message = Renderer().message(
        Kind.SURVEY, {**CONTEXTS[Kind.SURVEY], "survey_url": "https://survey.example/1"},
        mail_from="Shop <orders@shop.test>", recipient="ada@example.test",
        message_id="<abc@shop.test>", date=datetime(2026, 3, 10, 12, tzinfo=UTC),
    )
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert parsed["From"] == "Shop <orders@shop.test>"
    assert parsed["To"] == "ada@example.test"
    assert parsed["Message-ID"] == "<abc@shop.test>"
    assert parsed["Subject"] == "How was your order #1001?"
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = parsed.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "https://survey.example/1" in text
    assert '<a href="https://survey.example/1">' in html
