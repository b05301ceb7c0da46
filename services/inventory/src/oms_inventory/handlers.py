"""Event handlers, routed by event type in ``app.py``. Each runs inside the consumer's inbox
transaction; ``OrderCreated`` also comes in batches (one transaction per fetch)."""

from __future__ import annotations

from oms_inventory.allocation import on_order_created, on_orders_created
from oms_inventory.allocation_store import SOURCE
from oms_inventory.reservations import (
    on_order_cancelled,
    on_order_paid,
    on_package_shipped,
    on_return_received,
)

__all__ = [
    "SOURCE",
    "on_order_cancelled",
    "on_order_created",
    "on_order_paid",
    "on_orders_created",
    "on_package_shipped",
    "on_return_received",
]
