"""The allocation RPCs: a read-only preview of the planner, and the backorder queue of a SKU.
A mixin of ``InventoryServicer``, which provides ``self._sessions``."""

from __future__ import annotations

import re
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from oms.inventory.v1 import inventory_pb2
from oms_platform.errors import NotFound, Violations
from oms_platform.pagination import encode_page_token
from oms_platform.values import LatLng
from sqlalchemy import exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_inventory import allocation
from oms_inventory.allocation_planner import STRATEGIES, Plan
from oms_inventory.catalogue import domain as catalogue_domain
from oms_inventory.domain import Line
from oms_inventory.lists import FilterError, decode_page_token
from oms_inventory.settings import InventorySettings
from oms_inventory.tables import backorders, products

PRODUCT_NAME = re.compile(r"^products/([^/]+)$")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_PREVIEW_LINES = 500
STRATEGY_NAMES = {
    inventory_pb2.ALLOCATION_STRATEGY_NEAREST: "nearest",
    inventory_pb2.ALLOCATION_STRATEGY_PRIORITY: "priority",
    inventory_pb2.ALLOCATION_STRATEGY_LOWEST_COST: "lowest_cost",
}
STRATEGY_VALUES = {name: value for value, name in STRATEGY_NAMES.items()}


class AllocationApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: InventorySettings

    async def PreviewAllocation(self, request: inventory_pb2.PreviewAllocationRequest,
                                context: grpc.aio.ServicerContext) -> inventory_pb2.AllocationPlan:
        _validate_preview(request)
        if request.strategy == inventory_pb2.ALLOCATION_STRATEGY_UNSPECIFIED:
            name = self._settings.allocation_strategy
        else:
            name = STRATEGY_NAMES[request.strategy]
        order = allocation.OrderRequest(
            order="preview",
            lines=[Line(ln.line_id, ln.sku, ln.quantity) for ln in request.lines],
            destination=allocation.destination_of(request.shipping_address),
        )
        async with self._sessions.begin() as session:
            result = await allocation.preview(session, order, STRATEGIES[name])
        # The strategy that ranked the nodes: lowest_cost says nearest when it could not
        # compare the candidates' costs.
        return _plan(result, STRATEGY_VALUES[result.strategy or name])

    async def ListBackorders(self, request: inventory_pb2.ListBackordersRequest,
                             context: grpc.aio.ServicerContext,
                             ) -> inventory_pb2.ListBackordersResponse:
        violations = Violations()
        match = PRODUCT_NAME.fullmatch(request.parent)
        violations.require(match is not None, "parent", "must be products/{sku}")
        violations.require(0 <= request.page_size <= MAX_PAGE_SIZE, "page_size",
                           f"must be between 0 and {MAX_PAGE_SIZE}")
        after = _decode_token(violations, request.page_token, request.parent)
        violations.raise_if_any()
        assert match is not None
        sku = match.group(1)
        size = request.page_size or DEFAULT_PAGE_SIZE
        # Keyset over the serving order (priority first, capture time, arrival): a page
        # stays right while lines ahead of it are served.
        statement = (select(backorders).where(backorders.c.sku == sku)
                     .order_by(backorders.c.priority.desc(), backorders.c.capture_time,
                               backorders.c.id).limit(size + 1))
        if after is not None:
            priority, capture, row_id = after
            key = tuple_(~backorders.c.priority, backorders.c.capture_time, backorders.c.id)
            statement = statement.where(key > tuple_(not priority, capture, row_id))
        async with self._sessions.begin() as session:
            known = await session.scalar(select(exists().where(products.c.sku == sku)))
            if not known:
                raise NotFound(f"products/{sku} not found", metadata={"name": request.parent})
            rows = (await session.execute(statement)).all()
        page, more = rows[:size], len(rows) > size
        response = inventory_pb2.ListBackordersResponse(
            backorders=[inventory_pb2.Backorder(
                order=row.order_name, line_id=row.line_id, sku=row.sku, quantity=row.quantity,
                priority=row.priority, capture_time=_timestamp(row.capture_time),
                create_time=_timestamp(row.created_at)) for row in page])
        if more:
            last = page[-1]
            response.next_page_token = encode_page_token(
                [last.priority, last.capture_time.isoformat(), last.id],
                {"parent": request.parent})
        return response


def _validate_preview(request: inventory_pb2.PreviewAllocationRequest) -> None:
    violations = Violations()
    if violations.require(request.HasField("shipping_address"), "shipping_address",
                          "required"):
        address = request.shipping_address
        catalogue_domain.check_address_lines(violations, "shipping_address.address_lines",
                                   address.address_lines)
        if address.HasField("location"):
            catalogue_domain.check_location(violations, "shipping_address.location",
                                  LatLng(address.location.latitude,
                                                address.location.longitude))
        else:
            violations.require(bool(address.region_code.strip()),
                               "shipping_address.region_code",
                               "required when the address has no location")
    if violations.require(bool(request.lines), "lines", "at least one line is required"):
        violations.require(len(request.lines) <= MAX_PREVIEW_LINES, "lines",
                           f"at most {MAX_PREVIEW_LINES} lines")
    seen: set[str] = set()
    for i, line in enumerate(request.lines[:MAX_PREVIEW_LINES]):
        if violations.require(bool(line.line_id), f"lines[{i}].line_id", "required"):
            violations.require(line.line_id not in seen, f"lines[{i}].line_id",
                               "must be unique within the order")
            seen.add(line.line_id)
        catalogue_domain.check_sku(violations, f"lines[{i}].sku", line.sku)
        violations.require(line.quantity > 0, f"lines[{i}].quantity", "must be positive")
    violations.require(
        request.strategy == inventory_pb2.ALLOCATION_STRATEGY_UNSPECIFIED
        or request.strategy in STRATEGY_NAMES, "strategy", "unknown strategy")
    violations.raise_if_any()


def _plan(result: Plan, strategy: int) -> inventory_pb2.AllocationPlan:
    def planned(line: Line) -> inventory_pb2.PlannedLine:
        return inventory_pb2.PlannedLine(line_id=line.line_id, sku=line.sku,
                                         quantity=line.quantity)

    return inventory_pb2.AllocationPlan(
        shipments=[inventory_pb2.PlannedShipment(node_id=node_id,
                                                 lines=[planned(ln) for ln in lines])
                   for node_id, lines in result.shipments.items()],
        backordered_lines=[planned(ln) for ln in result.backordered],
        refused_lines=[inventory_pb2.RefusedLine(line=planned(r.line), reason=r.reason.value,
                                                 message=r.message)
                       for r in result.rejected],
        strategy=strategy,  # type: ignore[arg-type]
    )


def _decode_token(violations: Violations, token: str,
                  parent: str) -> tuple[bool, datetime, int] | None:
    try:
        after = decode_page_token(token, {"parent": parent}, (bool, str, int))
        if after is None:
            return None
        priority, capture, row_id = after
        return priority, _parse_time(capture), row_id
    except (FilterError, ValueError):
        violations.add("page_token", "not a token this service issued for this list")
        return None


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
