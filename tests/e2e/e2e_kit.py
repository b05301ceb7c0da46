"""Helpers of the end-to-end tests: test data through the public APIs, stream reads."""

from __future__ import annotations

import secrets
import uuid

import nats
from google.type import latlng_pb2
from nats.js.api import ConsumerConfig, DeliverPolicy
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc

WEST = ("Reno", "NV", 39.5296, -119.8138)
EAST = ("Edison", "NJ", 40.5187, -74.4121)


async def add_node(inventory: inventory_pb2_grpc.InventoryServiceStub,
                   place: tuple[str, str, float, float], priority: int = 1) -> str:
    city, state, lat, lng = place
    node_id = f"{city.lower()}-{secrets.token_hex(4)}"
    await inventory.CreateFulfilmentNode(inventory_pb2.CreateFulfilmentNodeRequest(
        fulfilment_node=inventory_pb2.FulfilmentNode(
            node_id=node_id, display_name=city, type=inventory_pb2.NODE_TYPE_WAREHOUSE,
            priority=priority,
            address=common_pb2.Address(
                recipient=city, address_lines=["1 Dock Rd"], locality=city,
                administrative_area=state, postal_code="00000", region_code="US",
                location=latlng_pb2.LatLng(latitude=lat, longitude=lng)),
        )))
    return node_id


async def add_sku(inventory: inventory_pb2_grpc.InventoryServiceStub,
                  stock: dict[str, int]) -> str:
    sku = f"SKU-{secrets.token_hex(5).upper()}"
    await inventory.CreateProduct(inventory_pb2.CreateProductRequest(
        product=inventory_pb2.Product(sku=sku, title=sku)))
    for node_id, units in stock.items():
        await inventory.AdjustStock(inventory_pb2.AdjustStockRequest(
            node_id=node_id, sku=sku, delta=units,
            reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT))
    return sku


def order_json(sku: str, quantity: int = 1, *, state: str = "CA", city: str = "Los Angeles",
               channel: str = "shopify-e2e") -> dict[str, object]:
    return {
        "channel": channel,
        "externalOrderId": uuid.uuid4().hex,
        "customer": {"displayName": "Grace Hopper", "email": "grace@example.com"},
        "shippingAddress": {
            "recipient": "Grace Hopper", "addressLines": ["100 Main St"], "locality": city,
            "administrativeArea": state, "postalCode": "90012", "regionCode": "US",
        },
        "lines": [{"sku": sku, "quantity": quantity,
                   "unitPrice": {"currencyCode": "USD", "amount": "12.50"}}],
        "serviceLevel": "SERVICE_LEVEL_STANDARD",
        "paymentStatus": "PAYMENT_STATUS_PAID",
    }


async def stream_messages(nats_url: str, stream: str, subject: str) -> list[nats.aio.msg.Msg]:
    """Every message stored in `stream` on `subject`, read by a throwaway consumer."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        subscription = await js.pull_subscribe(
            subject, stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0),
        )
        messages: list[nats.aio.msg.Msg] = []
        while len(messages) < info.state.messages:
            try:
                batch = await subscription.fetch(500, timeout=1.0)
            except TimeoutError:  # nats' own TimeoutError is one too
                break
            messages.extend(batch)
        await subscription.unsubscribe()
        return messages
    finally:
        await nc.close()
