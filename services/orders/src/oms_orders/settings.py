"""The orders service's own settings, from ``OMS_ORDERS_*`` environment variables."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import Field
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
