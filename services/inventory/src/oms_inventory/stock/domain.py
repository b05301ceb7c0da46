"""Rules about stock levels: what is available, when to reorder and how much, how a level
differs from its ledger, the kinds of ledger rows, and what a valid movement is. Plain
Python, so the rules are tested without a server."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Any

from oms_platform import filtering as filters
from oms_platform.errors import Violations

from oms_inventory.catalogue.domain import check_node_id, check_request_id, check_sku

STOCK_LEVEL_NAME = re.compile(r"^fulfilmentNodes/([^/]+)/stockLevels/([^/]+)$")
NODE_PARENT = re.compile(r"^fulfilmentNodes/([^/]+)$")
CHANNEL_PARENT = re.compile(r"^channels/([^/]+)$")
BUFFER_NAME = re.compile(r"^channels/([^/]+)/buffers/([^/]+)$")
CHANNEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
EVERY = "-"
# A channel buffer for every SKU of the channel.
ALL_SKUS = "*"
MAX_RECEIPT_LINES = 1000
MAX_REFERENCE_LENGTH = 200

LEVEL_FILTER_FIELDS = {"sku": filters.text("=", wildcard=True)}


class LedgerKind(StrEnum):
    """What a ledger row records; the names of StockMovementKind without their prefix (an
    adjustment's kind is its AdjustmentReason: RECEIPT, CORRECTION or CYCLE_COUNT)."""

    RECEIPT = "RECEIPT"
    CORRECTION = "CORRECTION"
    CYCLE_COUNT = "CYCLE_COUNT"
    RESERVATION = "RESERVATION"
    RELEASE = "RELEASE"
    SHIPMENT = "SHIPMENT"
    RETURN_RESTOCK = "RETURN_RESTOCK"
    DRIFT_REPAIR = "DRIFT_REPAIR"
    PICK_SHORT = "PICK_SHORT"


def check_delta(violations: Violations, path: str, delta: int) -> None:
    if delta == 0:
        violations.add(path, "must not be zero")


def check_channel(violations: Violations, path: str, channel: str) -> None:
    if not CHANNEL_PATTERN.fullmatch(channel):
        violations.add(path, f"must match {CHANNEL_PATTERN.pattern}")


def check_positive(violations: Violations, path: str, value: int) -> None:
    if value <= 0:
        violations.add(path, "must be more than zero")


def check_reference(violations: Violations, path: str, note: str) -> None:
    violations.require(len(note) <= MAX_REFERENCE_LENGTH, path,
                       f"at most {MAX_REFERENCE_LENGTH} characters")


def check_adjustment(violations: Violations, *, node_id: str, sku: str, delta: int,
                     kind: LedgerKind | None, note: str, request_id: str) -> None:
    """An adjustment's fields; `kind` None when its reason is unset or unknown."""
    check_node_id(violations, "node_id", node_id)
    check_sku(violations, "sku", sku)
    check_delta(violations, "delta", delta)
    violations.require(kind is not None, "reason", "required")
    check_reference(violations, "note", note)
    check_request_id(violations, "request_id", request_id)


def check_parent(violations: Violations, parent: str, *, allow_every: bool) -> str | None:
    """The node of a `fulfilmentNodes/{node_id}` parent; None for `fulfilmentNodes/-`."""
    match = NODE_PARENT.fullmatch(parent)
    if match is None or (match.group(1) == EVERY and not allow_every):
        violations.add("parent", "must be fulfilmentNodes/{node_id}"
                       + (" or fulfilmentNodes/-" if allow_every else ""))
        return None
    return None if match.group(1) == EVERY else match.group(1)


def available(on_hand: int, reserved: int, safety_stock: int) -> int:
    """Units that can still be sold at a node: safety stock is never sold, and a level whose
    safety stock exceeds what is free has nothing to sell rather than a debt."""
    return max(0, on_hand - reserved - safety_stock)


def daily_velocity(reserved_units: int, released_units: int, window_days: int) -> Decimal:
    """Units sold per day: units reserved for orders less the units given back by cancellation
    or expiry, over the window. Reservations (not shipments) measure demand, so a slow
    warehouse does not look like slow sales; releases take back demand that never became a
    sale."""
    if window_days <= 0:
        return Decimal(0)
    net = max(0, reserved_units - released_units)
    return (Decimal(net) / Decimal(window_days)).quantize(Decimal("0.0001"))


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def reorder_point(*, fixed: int, velocity: Decimal, lead_time_days: int,
                  safety_stock: int) -> int:
    """The product's fixed reorder point, else what sells during the supplier's lead time plus
    the safety stock."""
    if fixed > 0:
        return fixed
    return _ceil(velocity * lead_time_days) + safety_stock


def at_reorder_point(available_units: int, point: int) -> bool:
    """A level with no reorder point (nothing sells, no lead time, no safety stock) never
    asks for more."""
    return point > 0 and available_units <= point


def suggested_quantity(*, available_units: int, point: int, velocity: Decimal,
                       review_days: int) -> int:
    """Order up to the reorder point plus what sells in one review period, so stock lasts
    until the next review plus the lead time; and at least enough to lift available above
    the point, so the alert re-arms once the order arrives."""
    order_up_to = max(point + _ceil(velocity * review_days), point + 1)
    return max(0, order_up_to - available_units)


@dataclass(frozen=True)
class Figures:
    on_hand: int
    reserved: int


@dataclass(frozen=True)
class Drift:
    node_id: str
    sku: str
    recorded: Figures
    ledger: Figures

    def describe(self) -> str:
        return (f"on_hand {self.recorded.on_hand}->{self.ledger.on_hand}, "
                f"reserved {self.recorded.reserved}->{self.ledger.reserved}")


def repairable(drift: Drift) -> bool:
    """The ledger's figures must themselves be a valid level to be written back."""
    return 0 <= drift.ledger.reserved <= drift.ledger.on_hand


@dataclass(frozen=True)
class Replenishment:
    node_id: str
    sku: str
    available: int
    reorder_point: int
    suggested_quantity: int
    velocity: Decimal
    lead_time_days: int


def replenishment(level: Any, velocity: Decimal, review_days: int) -> Replenishment:
    """What a level (node_id, sku, available, safety_stock and its product's
    fixed_reorder_point and supplier_lead_time_days) should reorder at this velocity."""
    point = reorder_point(
        fixed=level.fixed_reorder_point, velocity=velocity,
        lead_time_days=level.supplier_lead_time_days, safety_stock=level.safety_stock)
    return Replenishment(
        node_id=level.node_id,
        sku=level.sku,
        available=level.available,
        reorder_point=point,
        suggested_quantity=suggested_quantity(
            available_units=level.available, point=point, velocity=velocity,
            review_days=review_days),
        velocity=velocity,
        lead_time_days=level.supplier_lead_time_days,
    )
