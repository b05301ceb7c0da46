"""Shipping's labels over gRPC: buy a return label, print it."""

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

    def _stub(self) -> shipping_pb2_grpc.ShippingServiceStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target)
        return shipping_pb2_grpc.ShippingServiceStub(self._channel)

    async def create_label(self, request: shipping_pb2.CreateLabelRequest
                           ) -> shipping_pb2.Label:
        try:
            return await self._stub().CreateLabel(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _failure(error) from error

    async def document(self, label: str) -> shipping_pb2.Document:
        try:
            return await self._stub().GetLabelDocument(
                shipping_pb2.GetLabelDocumentRequest(
                    name=label, format=shipping_pb2.DOCUMENT_FORMAT_PDF),
                timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _failure(error) from error

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


def _failure(error: grpc.aio.AioRpcError) -> LabelRefused | ShippingUnavailable:
    message = f"shipping: {error.code().name}: {error.details() or ''}"[:1000]
    if error.code() in RETRYABLE:
        return ShippingUnavailable(message)
    return LabelRefused(message)
