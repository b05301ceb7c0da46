"""How the orders service is wired into the shared runtime."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import grpc
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.orders.v1 import insights_pb2, insights_pb2_grpc, orders_pb2, orders_pb2_grpc
from oms.returns.v1 import events_pb2 as returns_events
from oms.shipping.v1 import events_pb2 as shipping_events
from oms_platform.consumer import Subscription, one_by_one
from oms_platform.service import Runtime, ServiceDefinition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.capture import handlers as capture_handlers
from oms_orders.capture.api import CaptureApi
from oms_orders.insights import handlers as insights_handlers
from oms_orders.insights.api import InsightsApi
from oms_orders.lifecycle import handlers
from oms_orders.lifecycle.api import LifecycleApi
from oms_orders.lifecycle.store import SOURCE
from oms_orders.notifications import handlers as notifications_handlers
from oms_orders.notifications.api import NotificationsApi
from oms_orders.search.api import SearchApi
from oms_orders.settings import NotificationSettings, OrdersSettings
from oms_orders.tables import metadata

MIGRATIONS = Path(__file__).parent / "migrations"
READ_MODEL = "read-model"
SETTINGS = OrdersSettings()

__all__ = ["DEFINITION", "MIGRATIONS", "SOURCE"]


class OrdersServicer(CaptureApi, SearchApi, LifecycleApi, orders_pb2_grpc.OrdersServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: OrdersSettings) -> None:
        self._sessions = sessions
        self._settings = settings


class OrderInsightsServicer(InsightsApi, NotificationsApi,
                            insights_pb2_grpc.OrderInsightsServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions


def register(server: grpc.aio.Server, runtime: Runtime) -> Sequence[str]:
    orders_pb2_grpc.add_OrdersServiceServicer_to_server(
        OrdersServicer(runtime.sessions, SETTINGS), server
    )
    insights_pb2_grpc.add_OrderInsightsServiceServicer_to_server(
        OrderInsightsServicer(runtime.sessions), server
    )
    return [
        orders_pb2.DESCRIPTOR.services_by_name["OrdersService"].full_name,
        insights_pb2.DESCRIPTOR.services_by_name["OrderInsightsService"].full_name,
    ]


def subscriptions(runtime: Runtime) -> Sequence[Subscription]:
    return [
        Subscription(inventory_events.StockAllocated, handlers.on_stock_allocated,
                     batch_handler=handlers.on_stocks_allocated),
        Subscription(inventory_events.StockBackordered, handlers.on_stock_backordered),
        Subscription(inventory_events.AllocationFailed, handlers.on_allocation_failed),
        Subscription(inventory_events.StockReleased, handlers.on_stock_released),
        Subscription(inventory_events.ProductChanged, capture_handlers.on_product_changed),
        Subscription(fulfilment_events.PackageShipped, handlers.on_package_shipped),
        Subscription(shipping_events.ShipmentDelivered, handlers.on_shipment_delivered),
        Subscription(shipping_events.DeliveryException, handlers.on_delivery_exception),
        Subscription(returns_events.ReturnReceived, handlers.on_return_received),
        Subscription(returns_events.RefundIssued, handlers.on_refund_issued),
        # The read model is a consumer group of its own: it may wait for an order's
        # OrderCreated while the state machine goes on. A fetch is applied in one
        # transaction (the KPI handlers lock the orders it names first). The KPI handlers
        # come first: the notification handlers read what they wrote.
        *(
            replace(subscription, group=READ_MODEL,
                    batch_handler=subscription.batch_handler
                    or one_by_one(subscription.handler))
            for subscription in (
                *insights_handlers.subscriptions(),
                *notifications_handlers.subscriptions(NotificationSettings()),
            )
        ),
    ]


DEFINITION = ServiceDefinition(
    name="orders", metadata=metadata, register=register, subscriptions=subscriptions,
    background=(notifications_handlers.run_sender, handlers.payment_sweep(SETTINGS)),
)
