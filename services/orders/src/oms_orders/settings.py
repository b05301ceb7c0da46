"""The orders service's own settings, from ``OMS_ORDERS_*`` environment variables, read once
at start: the orders' own, and those of the customer emails."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from oms_orders.capture.domain import MAX_BATCH_ORDERS, CapturePolicy


class OrdersSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_ORDERS_", extra="ignore")

    payment_timeout_seconds: float = Field(
        default=1800.0, gt=0,
        description="How long an order captured unpaid waits for its payment before it is "
        "cancelled (and inventory lets its reservations expire)",
    )
    payment_sweep_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often overdue unpaid orders are looked for"
    )
    high_value_thresholds: dict[str, Decimal] = Field(
        default_factory=lambda: {"EUR": Decimal(500), "USD": Decimal(500),
                                 "GBP": Decimal(450)},
        description='Per currency, the total from which an order is high value, as JSON: '
        '{"EUR": "500"}; a currency not listed is never high value',
    )
    max_batch_size: int = Field(
        default=MAX_BATCH_ORDERS, gt=0, le=MAX_BATCH_ORDERS,
        description="Orders per BatchCreateOrders (at most the documented bound)",
    )

    def capture_policy(self) -> CapturePolicy:
        return CapturePolicy(
            payment_timeout=timedelta(seconds=self.payment_timeout_seconds),
            high_value_thresholds=self.high_value_thresholds,
        )


class NotificationSettings(BaseSettings):
    """Email settings of the orders service (``OMS_ORDERS_*``). Without ``smtp_host`` nothing
    is sent: notifications are still enqueued and wait until a mail server is configured."""

    model_config = SettingsConfigDict(env_prefix="OMS_ORDERS_", extra="ignore")

    smtp_host: str = Field(default="", description="Mail server; empty disables sending")
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS")
    smtp_timeout_seconds: float = 30.0
    mail_from: str = "Orders <orders@localhost>"
    survey_delay: timedelta = Field(
        default=timedelta(days=7), description="Survey email this long after delivery"
    )
    survey_url: str = Field(
        default="", description="Survey link; {order} is replaced by the order's id"
    )
    stale_after: timedelta = Field(
        default=timedelta(days=3),
        description="Emails due longer ago than this (replayed events) are not enqueued",
    )
    notify_poll_seconds: float = 1.0
    notify_batch_size: int = 50
    notify_max_attempts: int = 8
    notify_retry_base: timedelta = timedelta(seconds=30)
    notify_retry_cap: timedelta = timedelta(hours=1)
