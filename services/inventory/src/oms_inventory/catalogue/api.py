"""The catalogue's RPCs: products and fulfilment nodes. A mixin of the service's servicer,
which provides ``self._sessions``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from oms.inventory.v1 import inventory_pb2
from oms_platform import lists
from oms_platform.errors import AlreadyExists, NotFound, Violations
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_inventory.catalogue import convert, domain, store
from oms_inventory.catalogue.domain import NODE_NAME, PRODUCT_NAME, parse_name

Lookup = Callable[[], Awaitable[Row[Any] | None]]


class CatalogueApi:
    _sessions: async_sessionmaker[AsyncSession]

    # --- Products ---

    async def CreateProduct(self, request: inventory_pb2.CreateProductRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        violations = Violations()
        if violations.require(request.HasField("product"), "product", "required"):
            domain.check_sku(violations, "product.sku", request.product.sku)
            domain.check_product(violations, "product", convert.product_fields(request.product))
        domain.check_request_id(violations, "request_id", request.request_id)
        violations.raise_if_any()
        product = request.product
        values = {"sku": product.sku, **convert.product_values(product),
                  "request_id": request.request_id or None}
        async with self._sessions.begin() as session:
            created = False

            async def insert() -> Row[Any] | None:
                nonlocal created
                row = await store.insert_product(session, values)
                created = row is not None
                return row

            row = await _create_once(
                request.request_id, insert,
                lambda: store.product_by_request(session, request.request_id),
            )
            if row is None:
                raise AlreadyExists(f"product {product.sku} already exists",
                                    metadata={"name": f"products/{product.sku}"})
            if created:
                await store.publish_product_changes(session, [row])
        return convert.product_message(row)

    async def GetProduct(self, request: inventory_pb2.GetProductRequest,
                         context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        (sku,) = parse_name(PRODUCT_NAME, request.name, "products/{sku}")
        async with self._sessions.begin() as session:
            row = await store.product_by_sku(session, sku)
        if row is None:
            raise NotFound(f"product {sku} not found", metadata={"name": request.name})
        return convert.product_message(row)

    async def ListProducts(self, request: inventory_pb2.ListProductsRequest,
                           context: grpc.aio.ServicerContext
                           ) -> inventory_pb2.ListProductsResponse:
        query = {"filter": request.filter, "show_deleted": request.show_deleted}
        found, after, size = lists.parameters(
            request, query, (str,), fields=domain.PRODUCT_FILTER_FIELDS)
        async with self._sessions.begin() as session:
            rows = await store.list_products(
                session, found.conditions, show_deleted=request.show_deleted,
                after=after[0] if after else None, limit=size + 1)
        return inventory_pb2.ListProductsResponse(
            products=[convert.product_message(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.sku], query),
        )

    async def UpdateProduct(self, request: inventory_pb2.UpdateProductRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        violations = Violations()
        sku = ""
        paths: list[str] = []
        if violations.require(request.HasField("product"), "product", "required"):
            sku = domain.sku_of(violations, request.product.name, request.product.sku)
            paths = domain.check_mask(violations, request.update_mask.paths,
                                      domain.PRODUCT_PATHS)
            domain.check_product(violations, "product", convert.product_fields(request.product),
                                 whole=set(paths) == set(domain.PRODUCT_PATHS))
        violations.raise_if_any()
        changes = convert.changes(convert.product_values(request.product), paths,
                                  convert.PRODUCT_COLUMNS)
        async with self._sessions.begin() as session:
            row = await store.update_product(session, sku, changes)
            if row is None:
                raise NotFound(f"product {sku} not found", metadata={"name": f"products/{sku}"})
            await store.publish_product_changes(session, [row])
        return convert.product_message(row)

    async def DeleteProduct(self, request: inventory_pb2.DeleteProductRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.Product:
        (sku,) = parse_name(PRODUCT_NAME, request.name, "products/{sku}")
        async with self._sessions.begin() as session:
            row = await store.delete_product(session, sku)
            if row is not None:
                await store.publish_product_changes(session, [row], deleted=True)
            else:
                # Deleting twice (a retry) returns the product again and announces nothing.
                row = await store.product_by_sku(session, sku)
        if row is None:
            raise NotFound(f"product {sku} not found", metadata={"name": request.name})
        return convert.product_message(row)

    async def BatchUpsertProducts(
        self, request: inventory_pb2.BatchUpsertProductsRequest,
        context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.BatchUpsertProductsResponse:
        violations = Violations()
        count = len(request.products)
        violations.require(0 < count <= domain.MAX_BATCH, "products",
                           f"between 1 and {domain.MAX_BATCH} products")
        seen: dict[str, int] = {}
        for index, product in enumerate(request.products[:domain.MAX_BATCH]):
            path = f"products[{index}]"
            domain.check_sku(violations, f"{path}.sku", product.sku)
            domain.check_product(violations, path, convert.product_fields(product))
            if product.sku in seen:
                violations.add(f"{path}.sku", f"repeats products[{seen[product.sku]}]")
            seen.setdefault(product.sku, index)
        violations.raise_if_any()
        rows = [{"sku": p.sku, **convert.product_values(p)} for p in request.products]
        async with self._sessions.begin() as session:
            changed = await store.upsert_products(session, rows)
            await store.publish_product_changes(session, changed)
            stored = await store.products_by_sku(session, [p.sku for p in request.products])
        return inventory_pb2.BatchUpsertProductsResponse(
            products=[convert.product_message(stored[p.sku]) for p in request.products])

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
            domain.check_node(violations, "fulfilment_node", convert.node_fields(node),
                              set(domain.NODE_PATHS))
        domain.check_request_id(violations, "request_id", request.request_id)
        violations.raise_if_any()
        node = request.fulfilment_node
        values = {"node_id": node.node_id, **convert.node_values(node),
                  "request_id": request.request_id or None}
        async with self._sessions.begin() as session:
            created = False

            async def insert() -> Row[Any] | None:
                nonlocal created
                row = await store.insert_node(session, values)
                created = row is not None
                return row

            row = await _create_once(
                request.request_id, insert,
                lambda: store.node_by_request(session, request.request_id),
            )
            if row is None:
                raise AlreadyExists(f"fulfilment node {node.node_id} already exists",
                                    metadata={"name": f"fulfilmentNodes/{node.node_id}"})
            if created:
                await store.replace_bins(session, row.node_id, convert.bin_values(node))
            bins = await store.bins_of(session, [row.node_id])
        return convert.node_message(row, bins[row.node_id])

    async def GetFulfilmentNode(self, request: inventory_pb2.GetFulfilmentNodeRequest,
                                context: grpc.aio.ServicerContext) -> inventory_pb2.FulfilmentNode:
        (node_id,) = parse_name(NODE_NAME, request.name, "fulfilmentNodes/{node_id}")
        async with self._sessions.begin() as session:
            row = await store.node_by_id(session, node_id)
            bins = await store.bins_of(session, [node_id])
        if row is None:
            raise NotFound(f"fulfilment node {node_id} not found",
                           metadata={"name": request.name})
        return convert.node_message(row, bins[node_id])

    async def ListFulfilmentNodes(
        self, request: inventory_pb2.ListFulfilmentNodesRequest,
        context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.ListFulfilmentNodesResponse:
        query = {"filter": request.filter}
        found, after, size = lists.parameters(
            request, query, (str,), fields=domain.NODE_FILTER_FIELDS)
        async with self._sessions.begin() as session:
            rows = await store.list_nodes(session, found.conditions,
                                          after=after[0] if after else None, limit=size + 1)
            page = rows[:size]
            bins = await store.bins_of(session, [row.node_id for row in page])
        return inventory_pb2.ListFulfilmentNodesResponse(
            fulfilment_nodes=[convert.node_message(row, bins[row.node_id]) for row in page],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.node_id], query),
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
            node_id = domain.node_id_of(violations, node.name, node.node_id)
            paths = domain.check_mask(violations, request.update_mask.paths, domain.NODE_PATHS)
            domain.check_node(violations, "fulfilment_node", convert.node_fields(node),
                              set(paths))
        violations.raise_if_any()
        node = request.fulfilment_node
        changes = convert.changes(convert.node_values(node), paths, convert.NODE_COLUMNS)
        async with self._sessions.begin() as session:
            row = await store.update_node(session, node_id, changes)
            if row is None:
                raise NotFound(f"fulfilment node {node_id} not found",
                               metadata={"name": f"fulfilmentNodes/{node_id}"})
            if "bins" in paths:
                await store.replace_bins(session, node_id, convert.bin_values(node))
            bins = await store.bins_of(session, [node_id])
        return convert.node_message(row, bins[node_id])


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
