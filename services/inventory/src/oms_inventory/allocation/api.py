"""The allocation RPCs: a read-only preview of the planner, the backorder queue of a SKU and
the reservations of an order. A mixin of the service's servicer, which provides
``self._sessions`` and ``self._settings``."""

from __future__ import annotations

import re
from datetime import datetime

import grpc
from oms.inventory.v1 import inventory_pb2
from oms_platform import lists
from oms_platform.errors import FieldViolation, InvalidArgument, NotFound, Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_inventory.allocation import convert, domain, store
from oms_inventory.allocation.domain import STRATEGIES, OrderRequest, Plan, Policy, Strategy
from oms_inventory.catalogue.domain import PRODUCT_NAME
from oms_inventory.settings import InventorySettings

ORDER_NAME = re.compile(r"^orders/[^/]+$")


class AllocationApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: InventorySettings

    async def PreviewAllocation(self, request: inventory_pb2.PreviewAllocationRequest,
                                context: grpc.aio.ServicerContext) -> inventory_pb2.AllocationPlan:
        address = request.shipping_address
        lines = convert.lines_of(request.lines)
        violations = Violations()
        domain.check_preview(
            violations,
            address_lines=address.address_lines if request.HasField("shipping_address")
            else None,
            location=convert.location_of(address), region_code=address.region_code,
            lines=lines,
            strategy_known=request.strategy == inventory_pb2.ALLOCATION_STRATEGY_UNSPECIFIED
            or request.strategy in convert.STRATEGY_NAMES)
        violations.raise_if_any()
        if request.strategy == inventory_pb2.ALLOCATION_STRATEGY_UNSPECIFIED:
            name = self._settings.allocation_strategy
        else:
            name = convert.STRATEGY_NAMES[request.strategy]
        order = OrderRequest(order="preview", lines=lines,
                             destination=convert.destination_of(address))
        async with self._sessions.begin() as session:
            result = await _preview(session, order, STRATEGIES[name])
        # The strategy that ranked the nodes: lowest_cost says nearest when it could not
        # compare the candidates' costs.
        return convert.plan_message(result, convert.STRATEGY_VALUES[result.strategy or name])

    async def ListBackorders(self, request: inventory_pb2.ListBackordersRequest,
                             context: grpc.aio.ServicerContext,
                             ) -> inventory_pb2.ListBackordersResponse:
        violations = Violations()
        match = PRODUCT_NAME.fullmatch(request.parent)
        violations.require(match is not None, "parent", "must be products/{sku}")
        query = {"parent": request.parent}
        _, after, size = lists.parameters(request, query, (bool, datetime, int),
                                          violations=violations)
        assert match is not None
        sku = match.group(1)
        async with self._sessions.begin() as session:
            rows = await store.backorder_page(session, sku, after=after, limit=size + 1)
        if rows is None:
            raise NotFound(f"products/{sku} not found", metadata={"name": request.parent})
        return inventory_pb2.ListBackordersResponse(
            backorders=[convert.backorder(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(
                rows, size, lambda r: [r.priority, r.capture_time.isoformat(), r.id], query))

    async def ListReservations(
        self, request: inventory_pb2.ListReservationsRequest, context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.ListReservationsResponse:
        if not ORDER_NAME.fullmatch(request.order):
            raise InvalidArgument([FieldViolation("order", "must be orders/{order}")])
        async with self._sessions.begin() as session:
            rows = await store.reservations_of(session, request.order)
        return inventory_pb2.ListReservationsResponse(
            reservations=[convert.reservation(row) for row in rows])


async def _preview(session: AsyncSession, request: OrderRequest, strategy: Strategy) -> Plan:
    """The plan allocation would make now, without locking or writing anything."""
    skus = {line.sku for line in request.lines}
    products = await store.load_products(session, skus)
    capped = {s for s, rule in products.items() if rule.policy is Policy.ALLOW_UP_TO_LIMIT}
    return domain.plan(request.lines, products=products, nodes=await store.load_nodes(session),
                       available=await store.stock_of(session, skus=skus, lock=False),
                       waiting=await store.waiting_units(session, capped),
                       destination=request.destination, strategy=strategy)
