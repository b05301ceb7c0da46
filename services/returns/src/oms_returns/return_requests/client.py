"""The orders service over gRPC: the order a return is for."""

from __future__ import annotations

import grpc
from oms.orders.v1 import orders_pb2, orders_pb2_grpc
from oms_platform.errors import Unavailable


class OrdersUnavailable(Unavailable):
    reason = "ORDERS_UNAVAILABLE"


class Orders:
    """One channel to orders, opened on first use."""

    def __init__(self, target: str, *, timeout: float) -> None:
        self._target = target
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None

    async def get(self, name: str) -> orders_pb2.Order | None:
        """The order, or None when orders does not know it."""
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target)
        try:
            return await orders_pb2_grpc.OrdersServiceStub(self._channel).GetOrder(
                orders_pb2.GetOrderRequest(name=name), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise OrdersUnavailable(
                f"orders: {error.code().name}: {error.details() or ''}"[:1000]) from error

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
