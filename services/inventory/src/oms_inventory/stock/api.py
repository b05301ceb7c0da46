"""The stock RPCs: movements (adjustments, receipts, counts, safety stock), levels and the
ledger, the drift check, channel buffers and available-to-sell, replenishment suggestions.
A mixin of the service's servicer, which provides ``self._sessions`` and ``self._settings``."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import empty_pb2
from oms.inventory.v1 import inventory_pb2
from oms_platform import lists
from oms_platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_inventory.allocation.handlers import serve_backorders, unblock_shorted
from oms_inventory.catalogue import store as catalogue_store
from oms_inventory.catalogue.domain import (
    PRODUCT_NAME,
    check_not_negative,
    check_request_id,
    check_sku,
    parse_name,
)
from oms_inventory.settings import InventorySettings
from oms_inventory.stock import convert, domain, store
from oms_inventory.stock.domain import ALL_SKUS, LedgerKind


class StockApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: InventorySettings

    async def AdjustStock(self, request: inventory_pb2.AdjustStockRequest,
                          context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        kind = convert.adjustment_kind(request.reason)
        violations = Violations()
        domain.check_adjustment(violations, node_id=request.node_id, sku=request.sku,
                                delta=request.delta, kind=kind, note=request.note,
                                request_id=request.request_id)
        violations.raise_if_any()
        node_id, sku, delta = request.node_id, request.sku, request.delta
        async with self._sessions.begin() as session:
            await catalogue_store.require_node_and_product(session, node_id, sku)
            recorded = await store.claim_request(
                session,
                node_id=node_id,
                sku=sku,
                kind=kind,
                on_hand_delta=delta,
                reference=request.note or request.request_id or None,
                request_id=request.request_id or None,
            )
            if not recorded:
                return await _replayed_adjustment(session, request)
            changed = await store.change_on_hand(session, node_id, sku, delta)
            if changed is None:
                raise FailedPrecondition(
                    f"on-hand of {sku} at {node_id} may not drop below what is reserved",
                    reason="ON_HAND_BELOW_RESERVED",
                    metadata={"name": convert.level_name(node_id, sku)},
                )
            await _after_movement(session, [(node_id, sku)], self._settings, grew=delta > 0)
            (level,) = await store.levels(session, [(node_id, sku)])
        return convert.stock_level(level)

    async def ReceiveStock(self, request: inventory_pb2.ReceiveStockRequest,
                           context: grpc.aio.ServicerContext
                           ) -> inventory_pb2.ReceiveStockResponse:
        violations = Violations()
        node_id = domain.check_parent(violations, request.parent, allow_every=False)
        violations.require(0 < len(request.reference) <= domain.MAX_REFERENCE_LENGTH, "reference",
                           f"required, at most {domain.MAX_REFERENCE_LENGTH} characters")
        violations.require(0 < len(request.lines) <= domain.MAX_RECEIPT_LINES, "lines",
                           f"between 1 and {domain.MAX_RECEIPT_LINES} lines")
        for index, line in enumerate(request.lines[:domain.MAX_RECEIPT_LINES]):
            check_sku(violations, f"lines[{index}].sku", line.sku)
            domain.check_positive(violations, f"lines[{index}].quantity", line.quantity)
        check_request_id(violations, "request_id", request.request_id)
        violations.raise_if_any()
        assert node_id is not None
        lines = [(line.sku, line.quantity) for line in request.lines]
        skus = sorted({sku for sku, _ in lines})
        async with self._sessions.begin() as session:
            if not await store.node_exists(session, node_id):
                raise NotFound(f"fulfilment node {node_id} not found",
                               metadata={"name": request.parent})
            missing = await store.missing_products(session, skus)
            if missing:
                fields = [f"lines[{i}].sku" for i, (sku, _) in enumerate(lines) if sku in missing]
                names = [f"products/{sku}" for sku in sorted(missing)]
                raise NotFound(f"{', '.join(names)} not found",
                               metadata={"name": names[0], "fields": ",".join(fields)})
            first_sku, first_quantity = lines[0]
            recorded = await store.claim_request(
                session, node_id=node_id, sku=first_sku, kind=LedgerKind.RECEIPT,
                on_hand_delta=first_quantity, reference=request.reference,
                request_id=request.request_id or None)
            if not recorded:
                earlier = await store.movement_by_request(session, request.request_id)
                assert earlier is not None
                if (earlier.kind, earlier.node_id, earlier.reference) != (
                        LedgerKind.RECEIPT, node_id, request.reference):
                    raise InvalidArgument([FieldViolation(
                        "request_id", "already used for a different movement")])
            else:
                await store.record_receipt(session, node_id, request.reference, lines)
                await _after_movement(session, [(node_id, sku) for sku in skus],
                                      self._settings, grew=True)
            found = await store.levels(session, [(node_id, sku) for sku in skus])
        return inventory_pb2.ReceiveStockResponse(
            stock_levels=[convert.stock_level(r) for r in found])

    async def CountStock(self, request: inventory_pb2.CountStockRequest,
                         context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        node_id, sku = parse_name(domain.STOCK_LEVEL_NAME, request.name,
                                   "fulfilmentNodes/{node_id}/stockLevels/{sku}")
        violations = Violations()
        check_not_negative(violations, "counted_on_hand", request.counted_on_hand)
        domain.check_reference(violations, "note", request.note)
        check_request_id(violations, "request_id", request.request_id)
        violations.raise_if_any()
        async with self._sessions.begin() as session:
            await catalogue_store.require_node_and_product(session, node_id, sku)
            if request.request_id and await store.movement_by_request(session,
                                                                      request.request_id):
                return await _replayed_count(session, request, node_id, sku)
            current = await store.lock_level(session, node_id, sku)
            if request.counted_on_hand < current.reserved:
                raise FailedPrecondition(
                    f"counted {request.counted_on_hand} of {sku} at {node_id}, but "
                    f"{current.reserved} are reserved: recount, or release orders first",
                    reason="COUNT_BELOW_RESERVED",
                    metadata={"name": request.name, "reserved": str(current.reserved)},
                )
            delta = request.counted_on_hand - current.on_hand
            # A count that finds what was expected is recorded too: it proves the count.
            recorded = await store.claim_request(
                session, node_id=node_id, sku=sku, kind=LedgerKind.CYCLE_COUNT, on_hand_delta=delta,
                reference=request.note or request.request_id or None,
                request_id=request.request_id or None)
            if not recorded:
                # A concurrent retry of this count committed while this one waited for the
                # level's lock.
                return await _replayed_count(session, request, node_id, sku)
            await store.set_on_hand(session, node_id, sku, request.counted_on_hand)
            # A count of the SKU at the node settles what a short pick left in doubt, in
            # whichever bin: its open count tasks there are done.
            await store.close_count_tasks(session, node_id, sku)
            unblocked = await unblock_shorted(session, node_id, sku)
            await _after_movement(session, [(node_id, sku)], self._settings,
                                  grew=delta > 0 or unblocked > 0)
            (level,) = await store.levels(session, [(node_id, sku)])
        return convert.stock_level(level)

    async def UpdateStockLevel(self, request: inventory_pb2.UpdateStockLevelRequest,
                               context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        violations = Violations()
        if violations.require(request.HasField("stock_level"), "stock_level", "required"):
            name = request.stock_level.name
            violations.require(domain.STOCK_LEVEL_NAME.fullmatch(name) is not None,
                               "stock_level.name",
                               "must be fulfilmentNodes/{node_id}/stockLevels/{sku}")
            check_not_negative(violations, "stock_level.safety_stock",
                                      request.stock_level.safety_stock)
        violations.require(list(request.update_mask.paths) == ["safety_stock"], "update_mask",
                           "must be exactly safety_stock")
        violations.raise_if_any()
        match = domain.STOCK_LEVEL_NAME.fullmatch(request.stock_level.name)
        assert match is not None
        node_id, sku = match.groups()
        safety_stock = request.stock_level.safety_stock
        async with self._sessions.begin() as session:
            await catalogue_store.require_node_and_product(session, node_id, sku)
            previous = await store.set_safety_stock(session, node_id, sku, safety_stock)
            await _after_movement(session, [(node_id, sku)], self._settings,
                                  grew=safety_stock < previous)
            (level,) = await store.levels(session, [(node_id, sku)])
        return convert.stock_level(level)

    async def GetStockLevel(self, request: inventory_pb2.GetStockLevelRequest,
                            context: grpc.aio.ServicerContext) -> inventory_pb2.StockLevel:
        node_id, sku = parse_name(domain.STOCK_LEVEL_NAME, request.name,
                                   "fulfilmentNodes/{node_id}/stockLevels/{sku}")
        async with self._sessions.begin() as session:
            await catalogue_store.require_node_and_product(session, node_id, sku)
            found = await store.levels(session, [(node_id, sku)])
        if not found:
            return inventory_pb2.StockLevel(name=request.name, node_id=node_id, sku=sku)
        return convert.stock_level(found[0])

    async def ListStockLevels(self, request: inventory_pb2.ListStockLevelsRequest,
                              context: grpc.aio.ServicerContext
                              ) -> inventory_pb2.ListStockLevelsResponse:
        violations = Violations()
        node_id = domain.check_parent(violations, request.parent, allow_every=True)
        violations.raise_if_any()
        query = {"parent": request.parent, "filter": request.filter}
        found, after, size = lists.parameters(request, query, (str, str),
                                              fields=domain.LEVEL_FILTER_FIELDS)
        async with self._sessions.begin() as session:
            if node_id is not None and not await store.node_exists(session, node_id):
                raise NotFound(f"fulfilment node {node_id} not found",
                               metadata={"name": request.parent})
            rows = await store.list_levels(session, node_id=node_id, conditions=found.conditions,
                                           after=after, limit=size + 1)
        return inventory_pb2.ListStockLevelsResponse(
            stock_levels=[convert.stock_level(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.node_id, r.sku], query),
        )

    async def ListCountTasks(self, request: inventory_pb2.ListCountTasksRequest,
                             context: grpc.aio.ServicerContext
                             ) -> inventory_pb2.ListCountTasksResponse:
        violations = Violations()
        node_id = domain.check_parent(violations, request.parent, allow_every=True)
        query = {"parent": request.parent, "show_closed": request.show_closed}
        _, after, size = lists.parameters(request, query, (int,), violations=violations)
        async with self._sessions.begin() as session:
            if node_id is not None and not await store.node_exists(session, node_id):
                raise NotFound(f"fulfilment node {node_id} not found",
                               metadata={"name": request.parent})
            rows = await store.count_task_page(
                session, node_id=node_id, show_closed=request.show_closed,
                after=after[0] if after else None, limit=size + 1)
        return inventory_pb2.ListCountTasksResponse(
            count_tasks=[convert.count_task(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.id], query))

    async def ListStockMovements(self, request: inventory_pb2.ListStockMovementsRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> inventory_pb2.ListStockMovementsResponse:
        level = domain.STOCK_LEVEL_NAME.fullmatch(request.parent)
        node = domain.NODE_PARENT.fullmatch(request.parent)
        if level is None and (node is None or node.group(1) == domain.EVERY):
            raise InvalidArgument([FieldViolation(
                "parent",
                "must be fulfilmentNodes/{node_id} or fulfilmentNodes/{node_id}/stockLevels/{sku}",
            )])
        node_id, sku = level.groups() if level else (node.group(1) if node else "", None)
        query = {"parent": request.parent}
        _, after, size = lists.parameters(request, query, (int,))
        async with self._sessions.begin() as session:
            if sku is not None:
                await catalogue_store.require_node_and_product(session, node_id, sku)
            elif not await store.node_exists(session, node_id):
                raise NotFound(f"fulfilment node {node_id} not found",
                               metadata={"name": request.parent})
            rows = await store.list_movements(session, node_id=node_id, sku=sku,
                                              before=after[0] if after else None,
                                              limit=size + 1)
        return inventory_pb2.ListStockMovementsResponse(
            stock_movements=[convert.movement(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.id], query),
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
            checked, drifted, found = await store.find_drifts(
                session, limit=self._settings.max_drifts_per_check)
        context.set_trailing_metadata((("drifts-total", str(drifted)),))
        repaired: set[tuple[str, str]] = set()
        if request.repair and found:
            async with self._sessions.begin() as session:
                fixed = await store.repair_drifts(session, found)
                repaired = {(d.node_id, d.sku) for d in fixed}
                await _after_movement(session, sorted(repaired), self._settings,
                                      grew=True)
        return inventory_pb2.CheckStockDriftResponse(
            levels_checked=checked,
            drifts=[convert.drift(d, (d.node_id, d.sku) in repaired) for d in found],
        )

    # --- Available-to-sell ---

    async def SetChannelBuffer(self, request: inventory_pb2.SetChannelBufferRequest,
                               context: grpc.aio.ServicerContext) -> inventory_pb2.ChannelBuffer:
        violations = Violations()
        buffer = request.channel_buffer
        if violations.require(request.HasField("channel_buffer"), "channel_buffer",
                              "required"):
            domain.check_channel(violations, "channel_buffer.channel", buffer.channel)
            if buffer.sku != ALL_SKUS:
                check_sku(violations, "channel_buffer.sku", buffer.sku)
            check_not_negative(violations, "channel_buffer.buffer", buffer.buffer)
        violations.raise_if_any()
        async with self._sessions.begin() as session:
            if buffer.sku != ALL_SKUS:
                await catalogue_store.require_product(session, buffer.sku)
            await store.set_buffer(session, buffer.channel, buffer.sku, buffer.buffer)
            await _announce_buffer(session, buffer.sku, self._settings)
        return convert.channel_buffer(buffer.channel, buffer.sku, buffer.buffer)

    async def DeleteChannelBuffer(self, request: inventory_pb2.DeleteChannelBufferRequest,
                                  context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        channel, sku = parse_name(domain.BUFFER_NAME, request.name,
                                  "channels/{channel}/buffers/{sku}")
        async with self._sessions.begin() as session:
            if not await store.delete_buffer(session, channel, sku):
                raise NotFound(f"channel buffer {request.name} not found",
                               metadata={"name": request.name})
            await _announce_buffer(session, sku, self._settings)
        return empty_pb2.Empty()

    async def ListChannelBuffers(self, request: inventory_pb2.ListChannelBuffersRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> inventory_pb2.ListChannelBuffersResponse:
        (channel,) = parse_name(domain.CHANNEL_PARENT, request.parent, "channels/{channel}",
                                 field="parent")
        query = {"parent": request.parent}
        _, after, size = lists.parameters(request, query, (str, str))
        async with self._sessions.begin() as session:
            rows = await store.list_buffers(
                session, channel=None if channel == domain.EVERY else channel, after=after,
                limit=size + 1)
        return inventory_pb2.ListChannelBuffersResponse(
            channel_buffers=[convert.channel_buffer(r.channel, r.sku, r.buffer)
                             for r in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.channel, r.sku], query),
        )

    async def GetAvailableToSell(self, request: inventory_pb2.GetAvailableToSellRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> inventory_pb2.AvailableToSell:
        (sku,) = parse_name(PRODUCT_NAME, request.product, "products/{sku}", field="product")
        # A SKU no product can have (a NUL byte, which PostgreSQL cannot even compare) is
        # refused, not looked up.
        violations = Violations()
        check_sku(violations, "product", sku)
        violations.raise_if_any()
        async with self._sessions.begin() as session:
            await catalogue_store.require_product(session, sku)
            rows = await store.levels_of_sku(session, sku)
            buffers = await store.buffers_for(session, sku)
        return convert.available_to_sell(request.product, rows, buffers)

    # --- Replenishment ---

    async def ListReplenishmentSuggestions(
        self, request: inventory_pb2.ListReplenishmentSuggestionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> inventory_pb2.ListReplenishmentSuggestionsResponse:
        violations = Violations()
        node_id = domain.check_parent(violations, request.parent, allow_every=True)
        violations.raise_if_any()
        query = {"parent": request.parent}
        _, after, size = lists.parameters(request, query, (str, str))
        settings = self._settings
        async with self._sessions.begin() as session:
            rows = await store.levels_at_reorder_point(session, node_id=node_id, after=after,
                                                       limit=size + 1)
            page = rows[:size]
            # Figures as of now, not as of the movement that set the flag.
            velocities = await store.velocities(session, [(r.node_id, r.sku) for r in page],
                                                 settings.velocity_window_days)
        suggestions = [domain.replenishment(row, velocities[(row.node_id, row.sku)],
                                            settings.review_period_days)
                       for row in page]
        return inventory_pb2.ListReplenishmentSuggestionsResponse(
            suggestions=[convert.suggestion(s) for s in suggestions],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.node_id, r.sku], query),
        )


async def _after_movement(session: AsyncSession, keys: Sequence[tuple[str, str]],
                          settings: InventorySettings, *, grew: bool) -> None:
    """What every movement ends with, in its transaction: waiting orders are served first
    (when available may have grown), then the changes are announced with what they left."""
    if grew:
        await serve_backorders(session, keys, settings)
    await store.publish_changes(session, keys, settings)


async def _announce_buffer(session: AsyncSession, sku: str,
                           settings: InventorySettings) -> None:
    """A SKU's buffer changes what channels may sell of it at every node: the levels are
    announced again. A "*" buffer is not fanned out to every level of every SKU (that could
    be the whole catalogue); it shows in each level's next event and in GetAvailableToSell."""
    if sku != ALL_SKUS:
        await store.publish_changes(session, await store.level_keys_of_sku(session, sku),
                                     settings)


async def _replayed_adjustment(
    session: AsyncSession, request: inventory_pb2.AdjustStockRequest
) -> inventory_pb2.StockLevel:
    earlier = await store.movement_by_request(session, request.request_id)
    assert earlier is not None
    if (earlier.node_id, earlier.sku, earlier.on_hand_delta) != (
        request.node_id, request.sku, request.delta
    ):
        raise InvalidArgument([FieldViolation(
            "request_id", "already used for a different adjustment")])
    found = await store.levels(session, [(request.node_id, request.sku)])
    return convert.stock_level(found[0])


async def _replayed_count(session: AsyncSession, request: inventory_pb2.CountStockRequest,
                          node_id: str, sku: str) -> inventory_pb2.StockLevel:
    earlier = await store.movement_by_request(session, request.request_id)
    assert earlier is not None
    if (earlier.kind, earlier.node_id, earlier.sku) != (LedgerKind.CYCLE_COUNT, node_id, sku):
        raise InvalidArgument([FieldViolation(
            "request_id", "already used for a different movement")])
    (level,) = await store.levels(session, [(node_id, sku)])
    return convert.stock_level(level)


