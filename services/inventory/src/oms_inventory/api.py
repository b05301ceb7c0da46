"""The gRPC face of the inventory service: validate, act in one transaction, map to proto."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, time
from decimal import Decimal
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import timeofday_pb2
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms_platform import filtering as filters
from oms_platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from oms_platform.money import check_money
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_inventory import allocation, catalogue, domain, filtering, levels, repository, stock
from oms_inventory import stock_rules as rules
from oms_inventory.api_allocation import AllocationApi
from oms_inventory.domain import LatLng
from oms_inventory.filtering import FilterError
from oms_inventory.settings import InventorySettings

PRODUCT_NAME = re.compile(r"^products/([^/]+)$")
NODE_NAME = re.compile(r"^fulfilmentNodes/([^/]+)$")
NODE_PARENT = re.compile(r"^fulfilmentNodes/([^/]+)$")
STOCK_LEVEL_NAME = re.compile(r"^fulfilmentNodes/([^/]+)/stockLevels/([^/]+)$")
CHANNEL_PARENT = re.compile(r"^channels/([^/]+)$")
BUFFER_NAME = re.compile(r"^channels/([^/]+)/buffers/([^/]+)$")
ORDER_NAME = re.compile(r"^orders/[^/]+$")
EVERY = "-"
NODE_TYPE_PREFIX = "NODE_TYPE_"
REASON_PREFIX = "ADJUSTMENT_REASON_"
KIND_PREFIX = "STOCK_MOVEMENT_KIND_"
MAX_BATCH = 1000
MAX_RECEIPT_LINES = 1000
MAX_REFERENCE_LENGTH = 200

PRODUCT_MASK_COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "gtin": ("gtin",),
    "weight": ("weight_grams",),
    "dimensions": ("length_mm", "width_mm", "height_mm"),
    "fragile": ("fragile",),
    "hazardous": ("hazardous",),
    "minimum_order_quantity": ("minimum_order_quantity",),
    "returnable": ("returnable",),
    "backorder_policy": ("backorder_policy",),
    "backorder_limit": ("backorder_limit",),
    "reorder_point": ("reorder_point",),
    "supplier_lead_time_days": ("supplier_lead_time_days",),
}
NODE_MASK_COLUMNS: dict[str, tuple[str, ...]] = {
    "display_name": ("display_name",),
    "type": ("node_type",),
    "address": ("address", "latitude", "longitude"),
    "priority": ("priority",),
    "service_regions": ("service_regions",),
    "cutoff_time": ("cutoff_time",),
    "time_zone": ("time_zone",),
    "shipment_cost": ("shipment_cost", "shipment_cost_currency"),
    "bins": (),
}
PRODUCT_FILTER_FIELDS = {
    "sku": filters.text(wildcard=True),
    "title": filters.text(wildcard=True),
    "gtin": filters.text("=", "!=", wildcard=True),
    "fragile": filters.boolean(),
    "hazardous": filters.boolean(),
    "returnable": filters.boolean(),
    "backorder_policy": filters.enum({v: v for v in ("ALLOW", "DENY", "ALLOW_UP_TO_LIMIT")}),
}
NODE_FILTER_FIELDS = {
    "type": filters.enum({
        name.removeprefix(NODE_TYPE_PREFIX): name.removeprefix(NODE_TYPE_PREFIX)
        for name in inventory_pb2.NodeType.keys() if name != "NODE_TYPE_UNSPECIFIED"}),
    "region": filters.text("=", wildcard=True),
}
LEVEL_FILTER_FIELDS = {"sku": filters.text("=", wildcard=True)}

Lookup = Callable[[], Awaitable[Row[Any] | None]]


class InventoryServicer(AllocationApi, inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: InventorySettings) -> None:
        self._sessions = sessions
        self._settings = settings

    # --- Products ---

    async def CreateProduct(self, request: inventory_pb2.CreateProductRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        violations = Violations()
        if violations.require(request.HasField("product"), "product", "required"):
            domain.check_sku(violations, "product.sku", request.product.sku)
            _check_product(violations, "product", request.product)
        domain.check_request_id(violations, "request_id", request.request_id)
        violations.raise_if_any()
        product = request.product
        values = {"sku": product.sku, **catalogue.product_values(product),
                  "request_id": request.request_id or None}
        async with self._sessions.begin() as session:
            created = False

            async def insert() -> Row[Any] | None:
                nonlocal created
                row = await repository.insert_product(session, values)
                created = row is not None
                return row

            row = await _create_once(
                request.request_id, insert,
                lambda: repository.product_by_request(session, request.request_id),
            )
            if row is None:
                raise AlreadyExists(f"product {product.sku} already exists",
                                    metadata={"name": f"products/{product.sku}"})
            if created:
                await catalogue.publish_product_changes(session, [row])
        return catalogue.product_message(row)

    async def GetProduct(self, request: inventory_pb2.GetProductRequest,
                         context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        (sku,) = _parse_name(PRODUCT_NAME, request.name, "products/{sku}")
        async with self._sessions.begin() as session:
            row = await repository.product_by_sku(session, sku)
        if row is None:
            raise NotFound(f"product {sku} not found", metadata={"name": request.name})
        return catalogue.product_message(row)

    async def ListProducts(self, request: inventory_pb2.ListProductsRequest,
                           context: grpc.aio.ServicerContext
                           ) -> inventory_pb2.ListProductsResponse:
        query = {"filter": request.filter, "show_deleted": request.show_deleted}
        conditions, after, size = _list_parameters(request, query, PRODUCT_FILTER_FIELDS, (str,))
        async with self._sessions.begin() as session:
            rows = await catalogue.list_products(
                session, conditions, show_deleted=request.show_deleted,
                after=after[0] if after else None, limit=size + 1)
        page = rows[:size]
        return inventory_pb2.ListProductsResponse(
            products=[catalogue.product_message(row) for row in page],
            next_page_token=_next_token(rows, size, lambda r: [r.sku], query),
        )

    async def UpdateProduct(self, request: inventory_pb2.UpdateProductRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        violations = Violations()
        sku = ""
        paths: list[str] = []
        if violations.require(request.HasField("product"), "product", "required"):
            sku = _sku_of(violations, request.product)
            paths = _mask_paths(violations, request.update_mask, PRODUCT_MASK_COLUMNS)
            _check_product(violations, "product", request.product,
                           whole=set(paths) == set(PRODUCT_MASK_COLUMNS))
        violations.raise_if_any()
        values = catalogue.product_values(request.product)
        changes = {column: values[column] for path in paths
                   for column in PRODUCT_MASK_COLUMNS[path]}
        async with self._sessions.begin() as session:
            row = await catalogue.update_product(session, sku, changes)
            if row is None:
                raise NotFound(f"product {sku} not found", metadata={"name": f"products/{sku}"})
            await catalogue.publish_product_changes(session, [row])
        return catalogue.product_message(row)

    async def DeleteProduct(self, request: inventory_pb2.DeleteProductRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        (sku,) = _parse_name(PRODUCT_NAME, request.name, "products/{sku}")
        async with self._sessions.begin() as session:
            row = await catalogue.delete_product(session, sku)
            if row is not None:
                await catalogue.publish_product_changes(session, [row], deleted=True)
            else:
                # Deleting twice (a retry) returns the product again and announces nothing.
                row = await repository.product_by_sku(session, sku)
        if row is None:
            raise NotFound(f"product {sku} not found", metadata={"name": request.name})
        return catalogue.product_message(row)

    async def BatchUpsertProducts(
        self, request: inventory_pb2.BatchUpsertProductsRequest,
        context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.BatchUpsertProductsResponse:
        violations = Violations()
        count = len(request.products)
        violations.require(0 < count <= MAX_BATCH, "products",
                           f"between 1 and {MAX_BATCH} products")
        seen: dict[str, int] = {}
        for index, product in enumerate(request.products[:MAX_BATCH]):
            path = f"products[{index}]"
            domain.check_sku(violations, f"{path}.sku", product.sku)
            _check_product(violations, path, product)
            if product.sku in seen:
                violations.add(f"{path}.sku", f"repeats products[{seen[product.sku]}]")
            seen.setdefault(product.sku, index)
        violations.raise_if_any()
        rows = [{"sku": p.sku, **catalogue.product_values(p)} for p in request.products]
        async with self._sessions.begin() as session:
            changed = await catalogue.upsert_products(session, rows)
            await catalogue.publish_product_changes(session, changed)
            stored = await catalogue.products_by_sku(session, [p.sku for p in request.products])
        return inventory_pb2.BatchUpsertProductsResponse(
            products=[catalogue.product_message(stored[p.sku]) for p in request.products])

    # --- Fulfilment nodes ---

    async def CreateFulfilmentNode(
        self, request: inventory_pb2.CreateFulfilmentNodeRequest,
        context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.FulfilmentNode:
        violations = Violations()
        if violations.require(request.HasField("fulfilment_node"), "fulfilment_node",
                              "required"):
            node = request.fulfilment_node
            domain.check_node_id(violations, "fulfilment_node.node_id", node.node_id)
            _check_node(violations, "fulfilment_node", node, set(NODE_MASK_COLUMNS))
        domain.check_request_id(violations, "request_id", request.request_id)
        violations.raise_if_any()
        node = request.fulfilment_node
        values = {"node_id": node.node_id, **_node_values(node),
                  "request_id": request.request_id or None}
        async with self._sessions.begin() as session:
            created = False

            async def insert() -> Row[Any] | None:
                nonlocal created
                row = await repository.insert_node(session, values)
                created = row is not None
                return row

            row = await _create_once(
                request.request_id, insert,
                lambda: repository.node_by_request(session, request.request_id),
            )
            if row is None:
                raise AlreadyExists(f"fulfilment node {node.node_id} already exists",
                                    metadata={"name": f"fulfilmentNodes/{node.node_id}"})
            if created:
                await catalogue.replace_bins(session, row.node_id, _bins(node))
            bins = await catalogue.bins_of(session, [row.node_id])
        return _node(row, bins[row.node_id])

    async def GetFulfilmentNode(self, request: inventory_pb2.GetFulfilmentNodeRequest,
                                context: grpc.aio.ServicerContext) -> inventory_pb2.FulfilmentNode:
        (node_id,) = _parse_name(NODE_NAME, request.name, "fulfilmentNodes/{node_id}")
        async with self._sessions.begin() as session:
            row = await repository.node_by_id(session, node_id)
            bins = await catalogue.bins_of(session, [node_id])
        if row is None:
            raise NotFound(f"fulfilment node {node_id} not found",
                           metadata={"name": request.name})
        return _node(row, bins[node_id])

    async def ListFulfilmentNodes(
        self, request: inventory_pb2.ListFulfilmentNodesRequest,
        context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.ListFulfilmentNodesResponse:
        query = {"filter": request.filter}
        conditions, after, size = _list_parameters(request, query, NODE_FILTER_FIELDS, (str,))
        async with self._sessions.begin() as session:
            rows = await catalogue.list_nodes(session, conditions,
                                              after=after[0] if after else None,
                                              limit=size + 1)
            page = rows[:size]
            bins = await catalogue.bins_of(session, [row.node_id for row in page])
        return inventory_pb2.ListFulfilmentNodesResponse(
            fulfilment_nodes=[_node(row, bins[row.node_id]) for row in page],
            next_page_token=_next_token(rows, size, lambda r: [r.node_id], query),
        )

    async def UpdateFulfilmentNode(
        self, request: inventory_pb2.UpdateFulfilmentNodeRequest,
        context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.FulfilmentNode:
        violations = Violations()
        node_id = ""
        paths: list[str] = []
        if violations.require(request.HasField("fulfilment_node"), "fulfilment_node",
                              "required"):
            node = request.fulfilment_node
            node_id = _node_id_of(violations, node)
            paths = _mask_paths(violations, request.update_mask, NODE_MASK_COLUMNS)
            _check_node(violations, "fulfilment_node", node, set(paths))
        violations.raise_if_any()
        node = request.fulfilment_node
        values = _node_values(node)
        changes = {column: values[column] for path in paths
                   for column in NODE_MASK_COLUMNS[path]}
        async with self._sessions.begin() as session:
            row = await catalogue.update_node(session, node_id, changes)
            if row is None:
                raise NotFound(f"fulfilment node {node_id} not found",
                               metadata={"name": f"fulfilmentNodes/{node_id}"})
            if "bins" in paths:
                await catalogue.replace_bins(session, node_id, _bins(node))
            bins = await catalogue.bins_of(session, [node_id])
        return _node(row, bins[node_id])

    # --- Stock movements ---

    async def AdjustStock(self, request: inventory_pb2.AdjustStockRequest,
                          context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        _validate_adjustment(request)
        node_id, sku, delta = request.node_id, request.sku, request.delta
        async with self._sessions.begin() as session:
            await _require_node_and_product(session, node_id, sku)
            recorded = await stock.claim_request(
                session,
                node_id=node_id,
                sku=sku,
                kind=inventory_pb2.AdjustmentReason.Name(request.reason).removeprefix(
                    REASON_PREFIX),
                on_hand_delta=delta,
                reference=request.note or request.request_id or None,
                request_id=request.request_id or None,
            )
            if not recorded:
                return await _replayed_adjustment(session, request)
            changed = await repository.change_on_hand(session, node_id, sku, delta)
            if changed is None:
                raise FailedPrecondition(
                    f"on-hand of {sku} at {node_id} may not drop below what is reserved",
                    reason="ON_HAND_BELOW_RESERVED",
                    metadata={"name": _stock_level_name(node_id, sku)},
                )
            await _after_movement(session, [(node_id, sku)], self._settings, grew=delta > 0)
            (level,) = await stock.levels(session, [(node_id, sku)])
        return _stock_level(level)

    async def ReceiveStock(self, request: inventory_pb2.ReceiveStockRequest,
                           context: grpc.aio.ServicerContext
                           ) -> inventory_pb2.ReceiveStockResponse:
        violations = Violations()
        node_id = _check_parent(violations, request.parent, allow_every=False)
        violations.require(0 < len(request.reference) <= MAX_REFERENCE_LENGTH, "reference",
                           f"required, at most {MAX_REFERENCE_LENGTH} characters")
        violations.require(0 < len(request.lines) <= MAX_RECEIPT_LINES, "lines",
                           f"between 1 and {MAX_RECEIPT_LINES} lines")
        for index, line in enumerate(request.lines[:MAX_RECEIPT_LINES]):
            domain.check_sku(violations, f"lines[{index}].sku", line.sku)
            domain.check_positive(violations, f"lines[{index}].quantity", line.quantity)
        domain.check_request_id(violations, "request_id", request.request_id)
        violations.raise_if_any()
        assert node_id is not None
        lines = [(line.sku, line.quantity) for line in request.lines]
        skus = sorted({sku for sku, _ in lines})
        async with self._sessions.begin() as session:
            if not await stock.node_exists(session, node_id):
                raise NotFound(f"fulfilment node {node_id} not found",
                               metadata={"name": request.parent})
            missing = await stock.missing_products(session, skus)
            if missing:
                fields = [f"lines[{i}].sku" for i, (sku, _) in enumerate(lines) if sku in missing]
                names = [f"products/{sku}" for sku in sorted(missing)]
                raise NotFound(f"{', '.join(names)} not found",
                               metadata={"name": names[0], "fields": ",".join(fields)})
            first_sku, first_quantity = lines[0]
            recorded = await stock.claim_request(
                session, node_id=node_id, sku=first_sku, kind=stock.RECEIPT,
                on_hand_delta=first_quantity, reference=request.reference,
                request_id=request.request_id or None)
            if not recorded:
                earlier = await stock.movement_by_request(session, request.request_id)
                assert earlier is not None
                if (earlier.kind, earlier.node_id, earlier.reference) != (
                        stock.RECEIPT, node_id, request.reference):
                    raise InvalidArgument([FieldViolation(
                        "request_id", "already used for a different movement")])
            else:
                await stock.record_receipt(session, node_id, request.reference, lines)
                await _after_movement(session, [(node_id, sku) for sku in skus],
                                      self._settings, grew=True)
            found = await stock.levels(session, [(node_id, sku) for sku in skus])
        return inventory_pb2.ReceiveStockResponse(stock_levels=[_stock_level(r) for r in found])

    async def CountStock(self, request: inventory_pb2.CountStockRequest,
                         context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        node_id, sku = _parse_name(STOCK_LEVEL_NAME, request.name,
                                   "fulfilmentNodes/{node_id}/stockLevels/{sku}")
        violations = Violations()
        domain.check_not_negative(violations, "counted_on_hand", request.counted_on_hand)
        violations.require(len(request.note) <= MAX_REFERENCE_LENGTH, "note",
                           f"at most {MAX_REFERENCE_LENGTH} characters")
        domain.check_request_id(violations, "request_id", request.request_id)
        violations.raise_if_any()
        async with self._sessions.begin() as session:
            await _require_node_and_product(session, node_id, sku)
            if request.request_id and await stock.movement_by_request(session,
                                                                      request.request_id):
                return await _replayed_count(session, request, node_id, sku)
            current = await stock.lock_level(session, node_id, sku)
            if request.counted_on_hand < current.reserved:
                raise FailedPrecondition(
                    f"counted {request.counted_on_hand} of {sku} at {node_id}, but "
                    f"{current.reserved} are reserved: recount, or release orders first",
                    reason="COUNT_BELOW_RESERVED",
                    metadata={"name": request.name, "reserved": str(current.reserved)},
                )
            delta = request.counted_on_hand - current.on_hand
            # A count that finds what was expected is recorded too: it proves the count.
            recorded = await stock.claim_request(
                session, node_id=node_id, sku=sku, kind=stock.CYCLE_COUNT, on_hand_delta=delta,
                reference=request.note or request.request_id or None,
                request_id=request.request_id or None)
            if not recorded:
                # A concurrent retry of this count committed while this one waited for the
                # level's lock.
                return await _replayed_count(session, request, node_id, sku)
            await stock.set_on_hand(session, node_id, sku, request.counted_on_hand)
            await _after_movement(session, [(node_id, sku)], self._settings, grew=delta > 0)
            (level,) = await stock.levels(session, [(node_id, sku)])
        return _stock_level(level)

    async def UpdateStockLevel(self, request: inventory_pb2.UpdateStockLevelRequest,
                               context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        violations = Violations()
        if violations.require(request.HasField("stock_level"), "stock_level", "required"):
            violations.require(STOCK_LEVEL_NAME.fullmatch(request.stock_level.name) is not None,
                               "stock_level.name",
                               "must be fulfilmentNodes/{node_id}/stockLevels/{sku}")
            domain.check_not_negative(violations, "stock_level.safety_stock",
                                      request.stock_level.safety_stock)
        violations.require(list(request.update_mask.paths) == ["safety_stock"], "update_mask",
                           "must be exactly safety_stock")
        violations.raise_if_any()
        match = STOCK_LEVEL_NAME.fullmatch(request.stock_level.name)
        assert match is not None
        node_id, sku = match.groups()
        safety_stock = request.stock_level.safety_stock
        async with self._sessions.begin() as session:
            await _require_node_and_product(session, node_id, sku)
            previous = await stock.set_safety_stock(session, node_id, sku, safety_stock)
            await _after_movement(session, [(node_id, sku)], self._settings,
                                  grew=safety_stock < previous)
            (level,) = await stock.levels(session, [(node_id, sku)])
        return _stock_level(level)

    async def GetStockLevel(self, request: inventory_pb2.GetStockLevelRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        node_id, sku = _parse_name(STOCK_LEVEL_NAME, request.name,
                                   "fulfilmentNodes/{node_id}/stockLevels/{sku}")
        async with self._sessions.begin() as session:
            await _require_node_and_product(session, node_id, sku)
            found = await stock.levels(session, [(node_id, sku)])
        if not found:
            return inventory_pb2.StockLevel(name=request.name, node_id=node_id, sku=sku)
        return _stock_level(found[0])

    async def ListStockLevels(self, request: inventory_pb2.ListStockLevelsRequest,
                              context: grpc.aio.ServicerContext
                              ) -> inventory_pb2.ListStockLevelsResponse:
        violations = Violations()
        node_id = _check_parent(violations, request.parent, allow_every=True)
        violations.raise_if_any()
        query = {"parent": request.parent, "filter": request.filter}
        conditions, after, size = _list_parameters(request, query, LEVEL_FILTER_FIELDS,
                                                   (str, str))
        async with self._sessions.begin() as session:
            if node_id is not None and not await stock.node_exists(session, node_id):
                raise NotFound(f"fulfilment node {node_id} not found",
                               metadata={"name": request.parent})
            rows = await stock.list_levels(session, node_id=node_id, conditions=conditions,
                                           after=after, limit=size + 1)
        return inventory_pb2.ListStockLevelsResponse(
            stock_levels=[_stock_level(row) for row in rows[:size]],
            next_page_token=_next_token(rows, size, lambda r: [r.node_id, r.sku], query),
        )

    async def ListStockMovements(self, request: inventory_pb2.ListStockMovementsRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> inventory_pb2.ListStockMovementsResponse:
        level = STOCK_LEVEL_NAME.fullmatch(request.parent)
        node = NODE_PARENT.fullmatch(request.parent)
        if level is None and (node is None or node.group(1) == EVERY):
            raise InvalidArgument([FieldViolation(
                "parent",
                "must be fulfilmentNodes/{node_id} or fulfilmentNodes/{node_id}/stockLevels/{sku}",
            )])
        node_id, sku = level.groups() if level else (node.group(1) if node else "", None)
        query = {"parent": request.parent}
        _, after, size = _list_parameters(request, query, {}, (int,))
        async with self._sessions.begin() as session:
            if sku is not None:
                await _require_node_and_product(session, node_id, sku)
            elif not await stock.node_exists(session, node_id):
                raise NotFound(f"fulfilment node {node_id} not found",
                               metadata={"name": request.parent})
            rows = await stock.list_movements(session, node_id=node_id, sku=sku,
                                              before=after[0] if after else None,
                                              limit=size + 1)
        return inventory_pb2.ListStockMovementsResponse(
            stock_movements=[_movement(row) for row in rows[:size]],
            next_page_token=_next_token(rows, size, lambda r: [r.id], query),
        )

    async def CheckStockDrift(self, request: inventory_pb2.CheckStockDriftRequest,
                              context: grpc.aio.ServicerContext
                              ) -> inventory_pb2.CheckStockDriftResponse:
        # Bounded: the first max_drifts_per_check drifted levels (by node, SKU) are reported
        # and repaired; the trailing metadata "drifts-total" says how many drifted in all, and
        # the next call (after a repair) reports the next ones.
        async with self._sessions.begin() as session:
            # One snapshot for both sums, so a movement committing in between is not drift.
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            checked, drifted, found = await stock.find_drifts(
                session, limit=self._settings.max_drifts_per_check)
        context.set_trailing_metadata((("drifts-total", str(drifted)),))
        repaired: set[tuple[str, str]] = set()
        if request.repair and found:
            async with self._sessions.begin() as session:
                fixed = await stock.repair_drifts(session, found)
                repaired = {(d.node_id, d.sku) for d in fixed}
                await _after_movement(session, sorted(repaired), self._settings,
                                      grew=True)
        return inventory_pb2.CheckStockDriftResponse(
            levels_checked=checked,
            drifts=[
                inventory_pb2.StockDrift(
                    node_id=d.node_id, sku=d.sku, recorded_on_hand=d.recorded.on_hand,
                    recorded_reserved=d.recorded.reserved, ledger_on_hand=d.ledger.on_hand,
                    ledger_reserved=d.ledger.reserved,
                    repaired=(d.node_id, d.sku) in repaired)
                for d in found
            ],
        )

    # --- Available-to-sell ---

    async def SetChannelBuffer(self, request: inventory_pb2.SetChannelBufferRequest,
                               context: grpc.aio.ServicerContext) -> inventory_pb2.ChannelBuffer:
        violations = Violations()
        buffer = request.channel_buffer
        if violations.require(request.HasField("channel_buffer"), "channel_buffer",
                              "required"):
            domain.check_channel(violations, "channel_buffer.channel", buffer.channel)
            if buffer.sku != levels.ALL_SKUS:
                domain.check_sku(violations, "channel_buffer.sku", buffer.sku)
            domain.check_not_negative(violations, "channel_buffer.buffer", buffer.buffer)
        violations.raise_if_any()
        async with self._sessions.begin() as session:
            if buffer.sku != levels.ALL_SKUS:
                await _require_product(session, buffer.sku)
            await stock.set_buffer(session, buffer.channel, buffer.sku, buffer.buffer)
            await _announce_buffer(session, buffer.sku, self._settings)
        return _channel_buffer(buffer.channel, buffer.sku, buffer.buffer)

    async def DeleteChannelBuffer(self, request: inventory_pb2.DeleteChannelBufferRequest,
                                  context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        channel, sku = _parse_name(BUFFER_NAME, request.name, "channels/{channel}/buffers/{sku}")
        async with self._sessions.begin() as session:
            if not await stock.delete_buffer(session, channel, sku):
                raise NotFound(f"channel buffer {request.name} not found",
                               metadata={"name": request.name})
            await _announce_buffer(session, sku, self._settings)
        return empty_pb2.Empty()

    async def ListChannelBuffers(self, request: inventory_pb2.ListChannelBuffersRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> inventory_pb2.ListChannelBuffersResponse:
        (channel,) = _parse_name(CHANNEL_PARENT, request.parent, "channels/{channel}",
                                 field="parent")
        query = {"parent": request.parent}
        _, after, size = _list_parameters(request, query, {}, (str, str))
        async with self._sessions.begin() as session:
            rows = await stock.list_buffers(session, channel=None if channel == EVERY else channel,
                                            after=after, limit=size + 1)
        return inventory_pb2.ListChannelBuffersResponse(
            channel_buffers=[_channel_buffer(r.channel, r.sku, r.buffer) for r in rows[:size]],
            next_page_token=_next_token(rows, size, lambda r: [r.channel, r.sku], query),
        )

    async def GetAvailableToSell(self, request: inventory_pb2.GetAvailableToSellRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> inventory_pb2.AvailableToSell:
        (sku,) = _parse_name(PRODUCT_NAME, request.product, "products/{sku}", field="product")
        async with self._sessions.begin() as session:
            await _require_product(session, sku)
            rows = await stock.levels_of_sku(session, sku)
            buffers = await stock.buffers_for(session, sku)
        network = sum(rules.available(r.on_hand, r.reserved, r.safety_stock) for r in rows)
        return inventory_pb2.AvailableToSell(
            product=request.product,
            network_available=network,
            channels=[
                inventory_pb2.ChannelAvailableToSell(
                    channel=channel, buffer=buffer, available_to_sell=max(0, network - buffer))
                for channel, buffer in sorted(buffers.items())
            ],
            stock_levels=[_stock_level(row) for row in rows],
        )

    # --- Replenishment ---

    async def ListReplenishmentSuggestions(
        self, request: inventory_pb2.ListReplenishmentSuggestionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.ListReplenishmentSuggestionsResponse:
        violations = Violations()
        node_id = _check_parent(violations, request.parent, allow_every=True)
        violations.raise_if_any()
        query = {"parent": request.parent}
        _, after, size = _list_parameters(request, query, {}, (str, str))
        settings = self._settings
        async with self._sessions.begin() as session:
            rows = await stock.levels_at_reorder_point(session, node_id=node_id, after=after,
                                                       limit=size + 1)
            page = rows[:size]
            # Figures as of now, not as of the movement that set the flag.
            velocities = await levels.velocities(session, [(r.node_id, r.sku) for r in page],
                                                 settings.velocity_window_days)
        suggestions = [levels.replenishment(row, velocities[(row.node_id, row.sku)],
                                            settings.review_period_days)
                       for row in page]
        return inventory_pb2.ListReplenishmentSuggestionsResponse(
            suggestions=[
                inventory_pb2.ReplenishmentSuggestion(
                    node_id=s.node_id, sku=s.sku, available=s.available,
                    reorder_point=s.reorder_point, suggested_quantity=s.suggested_quantity,
                    daily_velocity=levels.decimal_text(s.velocity), lead_time_days=s.lead_time_days)
                for s in suggestions
            ],
            next_page_token=_next_token(rows, size, lambda r: [r.node_id, r.sku], query),
        )

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


async def _after_movement(session: AsyncSession, keys: Sequence[tuple[str, str]],
                          settings: InventorySettings, *, grew: bool) -> None:
    """What every movement ends with, in its transaction: waiting orders are served first
    (when available may have grown), then the changes are announced with what they left."""
    if grew:
        await allocation.serve_backorders(session, keys, settings)
    await levels.publish_changes(session, keys, settings)


async def _announce_buffer(session: AsyncSession, sku: str,
                           settings: InventorySettings) -> None:
    """A SKU's buffer changes what channels may sell of it at every node: the levels are
    announced again. A "*" buffer is not fanned out to every level of every SKU (that could
    be the whole catalogue); it shows in each level's next event and in GetAvailableToSell."""
    if sku != levels.ALL_SKUS:
        await levels.publish_changes(session, await stock.level_keys_of_sku(session, sku),
                                     settings)


async def _create_once(request_id: str, insert: Lookup, by_request: Lookup) -> Row[Any] | None:
    """Creates a resource unless the request id was seen: then returns the first result.
    None when the resource exists and was created by another request."""
    if request_id and (earlier := await by_request()) is not None:
        return earlier
    created = await insert()
    if created is None and request_id:
        # A concurrent call with the same request id may have committed in between.
        return await by_request()
    return created


async def _require_node_and_product(session: AsyncSession, node_id: str, sku: str) -> None:
    node, product = await repository.node_and_product_exist(session, node_id, sku)
    missing = [
        *([] if node else [f"fulfilmentNodes/{node_id}"]),
        *([] if product else [f"products/{sku}"]),
    ]
    if missing:
        raise NotFound(f"{' and '.join(missing)} not found", metadata={"name": missing[0]})


async def _require_product(session: AsyncSession, sku: str) -> None:
    if await repository.product_by_sku(session, sku) is None:
        raise NotFound(f"product {sku} not found", metadata={"name": f"products/{sku}"})


async def _replayed_adjustment(
    session: AsyncSession, request: inventory_pb2.AdjustStockRequest
) -> inventory_pb2.StockLevel:
    earlier = await stock.movement_by_request(session, request.request_id)
    assert earlier is not None
    if (earlier.node_id, earlier.sku, earlier.on_hand_delta) != (
        request.node_id, request.sku, request.delta
    ):
        raise InvalidArgument([FieldViolation(
            "request_id", "already used for a different adjustment")])
    found = await stock.levels(session, [(request.node_id, request.sku)])
    return _stock_level(found[0])


async def _replayed_count(session: AsyncSession, request: inventory_pb2.CountStockRequest,
                          node_id: str, sku: str) -> inventory_pb2.StockLevel:
    earlier = await stock.movement_by_request(session, request.request_id)
    assert earlier is not None
    if (earlier.kind, earlier.node_id, earlier.sku) != (stock.CYCLE_COUNT, node_id, sku):
        raise InvalidArgument([FieldViolation(
            "request_id", "already used for a different movement")])
    (level,) = await stock.levels(session, [(node_id, sku)])
    return _stock_level(level)


def _parse_name(pattern: re.Pattern[str], name: str, template: str,
                field: str = "name") -> tuple[str, ...]:
    match = pattern.fullmatch(name)
    if match is None:
        raise InvalidArgument([FieldViolation(field, f"must be {template}")])
    return match.groups()


def _check_parent(violations: Violations, parent: str, *, allow_every: bool) -> str | None:
    """The node of a `fulfilmentNodes/{node_id}` parent; None for `fulfilmentNodes/-`."""
    match = NODE_PARENT.fullmatch(parent)
    if match is None or (match.group(1) == EVERY and not allow_every):
        violations.add("parent", "must be fulfilmentNodes/{node_id}"
                       + (" or fulfilmentNodes/-" if allow_every else ""))
        return None
    return None if match.group(1) == EVERY else match.group(1)


def _list_parameters(request: Any, query: Mapping[str, Any],
                     fields: Mapping[str, filters.Field], key: filtering.KeyShape,
                     ) -> tuple[list[filters.Condition], list[Any] | None, int]:
    violations = Violations()
    conditions: list[filters.Condition] = []
    after = None
    if fields:
        try:
            conditions = list(filters.parse(request.filter, fields).conditions)
        except InvalidArgument as error:
            violations.items.extend(error.violations)
    if request.page_size < 0:
        violations.add("page_size", "must not be negative")
    try:
        after = filtering.decode_page_token(request.page_token, query, key)
    except FilterError as error:
        violations.add("page_token", str(error))
    violations.raise_if_any()
    return conditions, after, filtering.page_size(request.page_size)


def _next_token(rows: Sequence[Row[Any]], size: int, key: Callable[[Row[Any]], list[Any]],
                query: Mapping[str, Any]) -> str:
    if len(rows) <= size:
        return ""
    return filtering.encode_page_token(key(rows[size - 1]), query)


def _mask_paths(violations: Violations, mask: FieldMask,
                columns: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The fields an update changes: AIP-134, an empty mask or "*" means every one."""
    paths = list(mask.paths)
    if not paths or paths == ["*"]:
        return list(columns)
    if len(paths) > len(columns):
        violations.add("update_mask", f"at most {len(columns)} paths")
        return []
    for path in paths:
        if path not in columns:
            violations.add("update_mask", f"{path!r} cannot be updated; updatable: "
                           + ", ".join(columns))
    return [path for path in paths if path in columns]


def _sku_of(violations: Violations, product: inventory_pb2.Product) -> str:
    sku = product.sku
    if product.name:
        match = PRODUCT_NAME.fullmatch(product.name)
        if match is None:
            violations.add("product.name", "must be products/{sku}")
            return sku
        if sku and sku != match.group(1):
            violations.add("product.sku", "does not match product.name")
        sku = match.group(1)
    domain.check_sku(violations, "product.sku", sku)
    return sku


def _node_id_of(violations: Violations, node: inventory_pb2.FulfilmentNode) -> str:
    node_id = node.node_id
    if node.name:
        match = NODE_NAME.fullmatch(node.name)
        if match is None:
            violations.add("fulfilment_node.name", "must be fulfilmentNodes/{node_id}")
            return node_id
        if node_id and node_id != match.group(1):
            violations.add("fulfilment_node.node_id", "does not match fulfilment_node.name")
        node_id = match.group(1)
    domain.check_node_id(violations, "fulfilment_node.node_id", node_id)
    return node_id


def _check_product(violations: Violations, path: str, product: inventory_pb2.Product, *,
                   whole: bool = True) -> None:
    """The fields of a product; `whole` when the message is the whole product (not an update
    of some fields), so that rules across fields can be checked."""
    domain.check_title(violations, f"{path}.title", product.title)
    domain.check_gtin(violations, f"{path}.gtin", product.gtin)
    domain.check_not_negative(violations, f"{path}.weight.grams", product.weight.grams)
    for dimension in ("length_mm", "width_mm", "height_mm"):
        domain.check_not_negative(violations, f"{path}.dimensions.{dimension}",
                                  getattr(product.dimensions, dimension))
    for name in ("minimum_order_quantity", "backorder_limit", "reorder_point",
                 "supplier_lead_time_days"):
        domain.check_not_negative(violations, f"{path}.{name}", getattr(product, name))
    if product.backorder_policy not in inventory_pb2.BackorderPolicy.values():
        violations.add(f"{path}.backorder_policy", "unknown policy")
    elif (whole and product.backorder_limit
          and product.backorder_policy != inventory_pb2.BACKORDER_POLICY_ALLOW_UP_TO_LIMIT):
        violations.add(f"{path}.backorder_limit", "only with BACKORDER_POLICY_ALLOW_UP_TO_LIMIT")


def _check_node(violations: Violations, path: str, node: inventory_pb2.FulfilmentNode,
                paths: set[str]) -> None:
    """The fields of a node being created (every path) or updated (the masked paths)."""
    if "type" in paths:
        violations.require(node.type != inventory_pb2.NODE_TYPE_UNSPECIFIED
                           and node.type in inventory_pb2.NodeType.values(),
                           f"{path}.type", "required")
    if "address" in paths and violations.require(node.HasField("address"), f"{path}.address",
                                                 "required"):
        domain.check_address_lines(violations, f"{path}.address.address_lines",
                                   node.address.address_lines)
        location = node.address.location
        domain.check_location(
            violations, f"{path}.address.location",
            LatLng(location.latitude, location.longitude)
            if node.address.HasField("location") else None,
        )
    if "priority" in paths:
        domain.check_not_negative(violations, f"{path}.priority", node.priority)
    if "service_regions" in paths:
        domain.check_regions(violations, f"{path}.service_regions", node.service_regions)
    if "cutoff_time" in paths and node.HasField("cutoff_time"):
        cutoff = node.cutoff_time
        domain.check_time_of_day(violations, f"{path}.cutoff_time", cutoff.hours,
                                 cutoff.minutes, cutoff.seconds, cutoff.nanos)
    if "time_zone" in paths:
        domain.check_time_zone(violations, f"{path}.time_zone", node.time_zone)
    if "shipment_cost" in paths and node.HasField("shipment_cost"):
        check_money(violations, f"{path}.shipment_cost", node.shipment_cost.currency_code,
                    node.shipment_cost.amount)
    if "bins" in paths:
        domain.check_bins(violations, f"{path}.bins", [
            domain.Bin(b.bin_code, b.zone, b.walk_sequence) for b in node.bins])


def _node_values(node: inventory_pb2.FulfilmentNode) -> dict[str, Any]:
    cutoff = node.cutoff_time
    cost = node.shipment_cost
    return {
        "display_name": node.display_name,
        "node_type": inventory_pb2.NodeType.Name(node.type).removeprefix(NODE_TYPE_PREFIX),
        "address": json_format.MessageToDict(node.address),
        "latitude": node.address.location.latitude,
        "longitude": node.address.location.longitude,
        "priority": node.priority,
        "service_regions": list(node.service_regions),
        "cutoff_time": time(cutoff.hours, cutoff.minutes, cutoff.seconds)
        if node.HasField("cutoff_time") else None,
        "time_zone": node.time_zone or "UTC",
        # No cost given is no cost known: never zero, which would make the node look free.
        "shipment_cost": Decimal(cost.amount) if node.HasField("shipment_cost") else None,
        "shipment_cost_currency": cost.currency_code if node.HasField("shipment_cost")
        else None,
    }


def _bins(node: inventory_pb2.FulfilmentNode) -> list[dict[str, Any]]:
    return [{"bin_code": b.bin_code, "zone": b.zone, "walk_sequence": b.walk_sequence}
            for b in node.bins]


def _validate_adjustment(request: inventory_pb2.AdjustStockRequest) -> None:
    violations = Violations()
    domain.check_node_id(violations, "node_id", request.node_id)
    domain.check_sku(violations, "sku", request.sku)
    domain.check_delta(violations, "delta", request.delta)
    violations.require(request.reason != inventory_pb2.ADJUSTMENT_REASON_UNSPECIFIED,
                       "reason", "required")
    violations.require(len(request.note) <= MAX_REFERENCE_LENGTH, "note",
                       f"at most {MAX_REFERENCE_LENGTH} characters")
    domain.check_request_id(violations, "request_id", request.request_id)
    violations.raise_if_any()


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _money_amount(amount: Decimal) -> str:
    """Without trailing zeros beyond the cents, e.g. "4.95" or "12.00"."""
    text = format(amount.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _node(row: Row[Any], bins: Sequence[Row[Any]]) -> inventory_pb2.FulfilmentNode:
    node = inventory_pb2.FulfilmentNode(
        name=f"fulfilmentNodes/{row.node_id}",
        node_id=row.node_id,
        display_name=row.display_name,
        type=inventory_pb2.NodeType.Value(NODE_TYPE_PREFIX + row.node_type),
        address=json_format.ParseDict(row.address, common_pb2.Address()),
        priority=row.priority,
        create_time=_timestamp(row.create_time),
        service_regions=row.service_regions,
        time_zone=row.time_zone,
        bins=[inventory_pb2.Bin(bin_code=b.bin_code, zone=b.zone, walk_sequence=b.walk_sequence)
              for b in bins],
        update_time=_timestamp(row.update_time),
    )
    if row.shipment_cost is not None:
        node.shipment_cost.CopyFrom(common_pb2.Money(currency_code=row.shipment_cost_currency,
                                                     amount=_money_amount(row.shipment_cost)))
    if row.cutoff_time is not None:
        node.cutoff_time.CopyFrom(timeofday_pb2.TimeOfDay(
            hours=row.cutoff_time.hour, minutes=row.cutoff_time.minute,
            seconds=row.cutoff_time.second))
    return node


def _stock_level_name(node_id: str, sku: str) -> str:
    return f"fulfilmentNodes/{node_id}/stockLevels/{sku}"


def _stock_level(row: Row[Any]) -> inventory_pb2.StockLevel:
    return inventory_pb2.StockLevel(
        name=_stock_level_name(row.node_id, row.sku),
        node_id=row.node_id,
        sku=row.sku,
        on_hand=row.on_hand,
        reserved=row.reserved,
        safety_stock=row.safety_stock,
        available=rules.available(row.on_hand, row.reserved, row.safety_stock),
    )


def _movement(row: Row[Any]) -> inventory_pb2.StockMovement:
    kind = KIND_PREFIX + row.kind
    return inventory_pb2.StockMovement(
        name=f"{_stock_level_name(row.node_id, row.sku)}/stockMovements/{row.id}",
        node_id=row.node_id,
        sku=row.sku,
        kind=inventory_pb2.StockMovementKind.Value(kind)
        if kind in inventory_pb2.StockMovementKind.keys() else 0,
        on_hand_delta=row.on_hand_delta,
        reserved_delta=row.reserved_delta,
        reference=row.reference or "",
        create_time=_timestamp(row.at),
    )


def _channel_buffer(channel: str, sku: str, buffer: int) -> inventory_pb2.ChannelBuffer:
    return inventory_pb2.ChannelBuffer(name=f"channels/{channel}/buffers/{sku}",
                                       channel=channel, sku=sku, buffer=buffer)
