"""The rules of a fulfilment order: its priority, its status derived from its lines' facts,
and how a cancellation falls on a line."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from oms_platform import filtering
from oms_platform.errors import FieldViolation, InvalidArgument

MAX_LINES = 500
MAX_PAGE_SIZE = 500


class Status(Enum):
    OPEN = "OPEN"
    PICKING = "PICKING"
    PICKED = "PICKED"
    SHORTED = "SHORTED"
    CANCELLED = "CANCELLED"
    AWAITING_THIRD_PARTY = "AWAITING_THIRD_PARTY"
    PACKING = "PACKING"
    PACKED = "PACKED"
    PARTIALLY_SHIPPED = "PARTIALLY_SHIPPED"
    SHIPPED = "SHIPPED"


# Past picking, the status follows the packages (packing's domain), not the lines.
PACKING_STATUSES = frozenset({Status.PACKING, Status.PACKED, Status.PARTIALLY_SHIPPED,
                              Status.SHIPPED})


# orders.v1.ServiceLevel numbers that travel fast enough to be picked first.
FAST_SERVICE_LEVELS = frozenset({3, 4})  # EXPRESS, NEXT_DAY


def is_priority(flagged: bool, service_level: int) -> bool:
    return flagged or service_level in FAST_SERVICE_LEVELS


@dataclass(frozen=True)
class LineState:
    """A line's units, always summing to ``quantity``: still open, on a list awaiting
    confirmation (allocated), picked, short, cancelled."""

    quantity: int
    allocated: int
    picked: int
    short: int
    cancelled: int

    @property
    def open(self) -> int:
        return self.quantity - self.allocated - self.picked - self.short - self.cancelled


def status_of(lines: Sequence[LineState], *, shipped: int = 0,
              third_party: bool = False) -> Status:
    """The order's status from its lines and the units of them that have left the node
    (``shipped``, part of ``picked``). Units picked but in no package that shipped are
    still to pack: an order whose packages were cancelled goes back to PICKED."""
    remaining = sum(line.open + line.allocated + line.picked for line in lines) - shipped
    if remaining <= 0:
        if shipped:
            return Status.SHIPPED
        return Status.CANCELLED if any(line.cancelled for line in lines) else Status.SHORTED
    if third_party:
        return Status.PARTIALLY_SHIPPED if shipped else Status.AWAITING_THIRD_PARTY
    if sum(line.open + line.allocated for line in lines) == 0:
        return Status.PICKED
    if any(line.allocated or line.picked or line.short for line in lines):
        return Status.PICKING
    return Status.OPEN


@dataclass(frozen=True)
class LineCancellation:
    """Where a cancellation of some units of a line is taken from: units not on a list
    first, then units on a list not yet picked, then picked units, which go back."""

    from_open: int
    from_allocated: int
    put_back: int

    @property
    def units(self) -> int:
        return self.from_open + self.from_allocated + self.put_back


def cancel_units(line: LineState, units: int | None, *, shipped: int = 0
                 ) -> LineCancellation:
    """``units`` None: all that is left of the line. Units that have left the node
    (``shipped``, part of ``picked``) are past cancelling."""
    left = line.open + line.allocated + line.picked - shipped
    wanted = left if units is None else max(0, min(units, left))
    from_open = min(wanted, line.open)
    from_allocated = min(wanted - from_open, line.allocated)
    return LineCancellation(from_open, from_allocated, wanted - from_open - from_allocated)


def name_of(fulfilment_order_id: uuid.UUID) -> str:
    return f"fulfilmentOrders/{fulfilment_order_id}"


def parse_name(name: str, field: str = "name") -> uuid.UUID:
    prefix = "fulfilmentOrders/"
    try:
        if not name.startswith(prefix):
            raise ValueError
        return uuid.UUID(name[len(prefix):])
    except ValueError:
        raise InvalidArgument([FieldViolation(
            field, 'must be "fulfilmentOrders/{id}"')]) from None


FIELDS = {
    "node_id": filtering.text("=", "!="),
    "order": filtering.text("=", "!="),
    "status": filtering.enum({s.name: s for s in Status}, prefix="FULFILMENT_ORDER_STATUS_"),
    "priority": filtering.boolean(),
    "needs_slot": filtering.boolean("="),
    "promised_ship_time": filtering.time(),
}
