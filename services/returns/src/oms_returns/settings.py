"""The returns service's own settings, from ``OMS_RETURNS_*`` environment variables. Read once
at start (``app.py``) and handed to the servicer; a test that needs other values builds the
service with its own ``ReturnsSettings``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReturnsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_RETURNS_", extra="ignore")

    # The orders service (host:port): what was bought, delivered, at what price.
    orders_target: str = "127.0.0.1:50051"
    orders_timeout_seconds: float = Field(default=5.0, gt=0)

    # The shipping service (host:port) that sells return labels, and the deadline of one
    # purchase.
    shipping_target: str = "127.0.0.1:50054"
    shipping_timeout_seconds: float = Field(default=10.0, gt=0)

    # The node returns are sent back to: shipping must know its origin (address, carriers).
    # Choosing the nearest node that accepts returns comes with receipt and inspection.
    return_node_id: str = Field(default="returns-centre", min_length=1, max_length=100)
    # The parcel's weight when the order has none (its SKUs unknown to the product master).
    default_parcel_grams: int = Field(default=1000, gt=0, le=1_000_000)
