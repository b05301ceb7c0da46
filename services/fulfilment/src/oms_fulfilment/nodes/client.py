"""Inventory's nodes over gRPC, each kept for a short time so a burst of releases at one node
costs one call."""

from __future__ import annotations

import time as clock
from datetime import time

import grpc
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms_platform.errors import NotFound

from oms_fulfilment.nodes.domain import Node, NodeType
from oms_fulfilment.picking.domain import Bin

_TYPES = {
    inventory_pb2.NODE_TYPE_WAREHOUSE: NodeType.WAREHOUSE,
    inventory_pb2.NODE_TYPE_THIRD_PARTY_LOGISTICS: NodeType.THIRD_PARTY_LOGISTICS,
    inventory_pb2.NODE_TYPE_DROPSHIP_SUPPLIER: NodeType.DROPSHIP_SUPPLIER,
}


class InventoryUnavailable(Exception):
    """Inventory did not answer; the caller retries (a handler by redelivery)."""


def node_of(message: inventory_pb2.FulfilmentNode) -> Node:
    cutoff = None
    if message.HasField("cutoff_time"):
        t = message.cutoff_time
        cutoff = time(t.hours, t.minutes, t.seconds)
    return Node(message.node_id, _TYPES.get(message.type, NodeType.WAREHOUSE),
                message.time_zone or "UTC", cutoff,
                tuple(Bin(b.bin_code, b.zone, b.walk_sequence) for b in message.bins))


class Nodes:
    """Nodes by id, read from inventory at most once per ``ttl`` seconds each."""

    def __init__(self, target: str, *, ttl: float, timeout: float) -> None:
        self._target = target
        self._ttl = ttl
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._cache: dict[str, tuple[float, Node]] = {}

    def _stub(self) -> inventory_pb2_grpc.InventoryServiceStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target)
        return inventory_pb2_grpc.InventoryServiceStub(self._channel)

    async def get(self, node_id: str) -> Node:
        cached = self._cache.get(node_id)
        if cached is not None and clock.monotonic() - cached[0] < self._ttl:
            return cached[1]
        try:
            reply = await self._stub().GetFulfilmentNode(
                inventory_pb2.GetFulfilmentNodeRequest(name=f"fulfilmentNodes/{node_id}"),
                timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"fulfilment node {node_id!r} not found") from error
            raise InventoryUnavailable(f"inventory: {error.code().name}") from error
        node = node_of(reply)
        self._cache[node_id] = (clock.monotonic(), node)
        return node

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
