"""The fulfilment service's own settings, from ``OMS_FULFILMENT_*`` environment variables.
Read once at start (``app.py``) and handed to the servicer, the handlers and the background
tasks; a test that needs other values builds the service with its own
``FulfilmentSettings``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BoxSetting(BaseModel):
    """A standard box: inner dimensions (mm), its own weight and the most the packed parcel
    may weigh (g)."""

    code: str
    length_mm: int = Field(gt=0)
    width_mm: int = Field(gt=0)
    height_mm: int = Field(gt=0)
    weight_g: int = Field(ge=0)
    max_weight_g: int = Field(gt=0)


# A small, medium and large shipping carton and a padded mailer: common sizes, used at every
# node that has no boxes of its own in OMS_FULFILMENT_NODE_BOXES.
DEFAULT_BOXES = [
    BoxSetting(code="mailer", length_mm=350, width_mm=250, height_mm=50, weight_g=40,
               max_weight_g=2_000),
    BoxSetting(code="small", length_mm=300, width_mm=200, height_mm=150, weight_g=180,
               max_weight_g=10_000),
    BoxSetting(code="medium", length_mm=400, width_mm=300, height_mm=250, weight_g=350,
               max_weight_g=20_000),
    BoxSetting(code="large", length_mm=600, width_mm=400, height_mm=400, weight_g=700,
               max_weight_g=30_000),
]


class FulfilmentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_FULFILMENT_", extra="ignore")

    # The inventory service (host:port): nodes, their bins, cut-off and time zone.
    inventory_target: str = "127.0.0.1:50052"
    # A node read from inventory is used this long before it is read again: bins and cut-offs
    # change rarely, and a release must not wait on a call per order.
    node_cache_seconds: float = Field(default=30.0, ge=0)
    # Deadline of one call to inventory.
    inventory_timeout_seconds: float = Field(default=5.0, gt=0)

    # The strategy CreatePickList uses when the request names none.
    default_pick_strategy: Literal["single_order", "batch", "zone", "wave"] = "batch"
    # What one picker carries on a batch, zone or wave run (the request may lower or raise
    # them within the contract's bounds).
    batch_max_orders: int = Field(default=20, ge=1, le=100)
    batch_max_units: int = Field(default=200, ge=1, le=2000)
    batch_max_weight_grams: int = Field(default=25_000, ge=1, le=100_000)

    # The standard boxes packing chooses from (JSON list), and per node (JSON object of node
    # id to list) for nodes whose boxes differ. Boxes change with a purchase order, not by the
    # hour: configuration, not an API.
    boxes: list[BoxSetting] = Field(default_factory=lambda: list(DEFAULT_BOXES),
                                    min_length=1, max_length=10)
    node_boxes: dict[str, list[BoxSetting]] = Field(default_factory=dict)

    # The shipping service (host:port) that sells labels, and the deadline of one purchase.
    shipping_target: str = "127.0.0.1:50054"
    shipping_timeout_seconds: float = Field(default=10.0, gt=0)
    # How often the labels of packages cancelled after their purchase are voided.
    void_interval_seconds: float = Field(default=5.0, gt=0)

    def boxes_at(self, node_id: str) -> list[BoxSetting]:
        return self.node_boxes.get(node_id) or self.boxes
