"""Shipping's labels over gRPC."""

from __future__ import annotations

import grpc
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from oms_platform.errors import FailedPrecondition, Unavailable

# Codes after which the same purchase later may pass: shipping (or its carrier) was away.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED})


class LabelRefused(FailedPrecondition):
    reason = "LABEL_REFUSED"


class ShippingUnavailable(Unavailable):
    reason = "SHIPPING_UNAVAILABLE"


class Shipping:
    """One channel to shipping, opened on first use."""

    def __init__(self, target: str, *, timeout: float) -> None:
        self._target = target
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None

    async def create_label(self, request: shipping_pb2.CreateLabelRequest
                           ) -> shipping_pb2.Label:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target)
        try:
            return await shipping_pb2_grpc.ShippingServiceStub(self._channel).CreateLabel(
                request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            message = f"shipping: {error.code().name}: {error.details() or ''}"[:1000]
            if error.code() in RETRYABLE:
                raise ShippingUnavailable(message) from error
            raise LabelRefused(message) from error

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
