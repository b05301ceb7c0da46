"""What a sales channel may sell: the inventory service's available-to-sell of a SKU, kept to
the partner's channels. Pure: no web framework, no gRPC.

Inventory answers the network's available units and the channels that hold some back (a
buffer for the SKU, or for every SKU); a channel without a buffer may sell the whole network's
available units. A partner sees its own channels' figures and nothing else: not another
channel's buffer, not the nodes the units are at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_BATCH_SKUS = 100
# The inventory catalogue's SKUs: another string names no product, so it is not looked up.
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


@dataclass(frozen=True)
class ChannelStock:
    channel: str
    available_to_sell: int
    buffer: int


def for_channels(network_available: int, buffered: Mapping[str, int],
                 channels: Iterable[str]) -> list[ChannelStock]:
    """Per channel (by name): the network's units less the channel's buffer, never below
    zero; ``buffered`` is every channel's buffer for the SKU, of which only ``channels``'
    are used."""
    return [ChannelStock(channel, max(0, network_available - buffered.get(channel, 0)),
                         buffered.get(channel, 0))
            for channel in sorted(channels)]
