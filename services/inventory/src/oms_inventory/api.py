"""The gRPC face of the inventory service: validate, act in one transaction, map to proto."""

from __future__ import annotations

import re

import grpc
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms_platform import filtering as filters
from oms_platform.errors import (
    FieldViolation,
    InvalidArgument,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_inventory import repository
from oms_inventory.api_allocation import AllocationApi
from oms_inventory.catalogue.api import CatalogueApi
from oms_inventory.settings import InventorySettings
from oms_inventory.stock.api import StockApi

NODE_PARENT = re.compile(r"^fulfilmentNodes/([^/]+)$")
STOCK_LEVEL_NAME = re.compile(r"^fulfilmentNodes/([^/]+)/stockLevels/([^/]+)$")
CHANNEL_PARENT = re.compile(r"^channels/([^/]+)$")
BUFFER_NAME = re.compile(r"^channels/([^/]+)/buffers/([^/]+)$")
ORDER_NAME = re.compile(r"^orders/[^/]+$")
EVERY = "-"
REASON_PREFIX = "ADJUSTMENT_REASON_"
KIND_PREFIX = "STOCK_MOVEMENT_KIND_"
MAX_RECEIPT_LINES = 1000
MAX_REFERENCE_LENGTH = 200

LEVEL_FILTER_FIELDS = {"sku": filters.text("=", wildcard=True)}

class InventoryServicer(CatalogueApi, StockApi, AllocationApi,
                        inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: InventorySettings) -> None:
        self._sessions = sessions
        self._settings = settings

    # --- Reservations ---

    async def ListReservations(
        self, request: inventory_pb2.ListReservationsRequest, context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.ListReservationsResponse:
        if not ORDER_NAME.fullmatch(request.order):
            raise InvalidArgument([FieldViolation("order", "must be orders/{order}")])
        async with self._sessions.begin() as session:
            rows = await repository.reservations_of(session, request.order)
        return inventory_pb2.ListReservationsResponse(
            reservations=[
                inventory_pb2.Reservation(order=row.order_name, line_id=row.line_id,
                                          node_id=row.node_id, sku=row.sku,
                                          quantity=row.quantity)
                for row in rows
            ]
        )


