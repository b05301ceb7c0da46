"""A node's facts fulfilment works with, and its promised ship time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

from oms_fulfilment.picking.domain import Bin


class NodeType(Enum):
    WAREHOUSE = "warehouse"
    THIRD_PARTY_LOGISTICS = "third_party_logistics"
    DROPSHIP_SUPPLIER = "dropship_supplier"


@dataclass(frozen=True)
class Node:
    node_id: str
    type: NodeType
    time_zone: str
    cutoff: time | None
    bins: tuple[Bin, ...]

    @property
    def picks_here(self) -> bool:
        """3PLs and dropship suppliers pick in their own buildings."""
        return self.type is NodeType.WAREHOUSE


def promised_ship_time(node: Node, released: datetime) -> datetime:
    """The node's next cut-off at or after the release, in the node's time zone: released
    before the cut-off it ships that day, after it the next day. Without a cut-off the order
    ships by the end of its release day. Weekends and holidays are not the node's to skip
    here: carriers' collection days belong to shipping's promise."""
    zone = ZoneInfo(node.time_zone or "UTC")
    local = released.astimezone(zone)
    if node.cutoff is None:
        return datetime.combine(local.date() + timedelta(days=1), time(0), zone)
    cutoff = datetime.combine(local.date(), node.cutoff, zone)
    if local > cutoff:
        cutoff = datetime.combine(local.date() + timedelta(days=1), node.cutoff, zone)
    return cutoff
