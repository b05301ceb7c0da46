"""Rules about stock levels: what is available, when to reorder and how much, and how a level
differs from its ledger. Plain Python, so the rules are tested without a server."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal


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

