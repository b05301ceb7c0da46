"""Picking's gRPC methods: CreatePickList, GetPickList, GetPickListDocument, ListPickLists,
ConfirmPick and GetFloorStats."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
from oms.fulfilment.v1 import fulfilment_pb2
from oms_platform import filtering, lists
from oms_platform.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.documents import domain as documents
from oms_fulfilment.nodes.client import Nodes
from oms_fulfilment.nodes.domain import promised_ship_time
from oms_fulfilment.packing import store as packing_store
from oms_fulfilment.picking import convert, domain, store
from oms_fulfilment.settings import FulfilmentSettings
from oms_fulfilment.tables import add_events

MAX_PAGE_SIZE = 500
MAX_REQUEST_ID = 200


def parse_list_name(name: str, field: str = "name") -> uuid.UUID:
    try:
        if not name.startswith("pickLists/"):
            raise ValueError
        return uuid.UUID(name.removeprefix("pickLists/"))
    except ValueError:
        raise InvalidArgument([FieldViolation(
            field, 'must be "pickLists/{id}"')]) from None


class PickingApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: FulfilmentSettings
    _nodes: Nodes

    async def CreatePickList(
        self, request: fulfilment_pb2.CreatePickListRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.CreatePickListResponse:
        v = Violations()
        v.require(0 < len(request.node_id) <= 100, "node_id", "required")
        v.require(request.strategy == 0 or request.strategy in convert.STRATEGIES, "strategy",
                  "not a strategy")
        v.require(0 <= request.max_orders <= domain.MAX_ORDERS, "max_orders",
                  f"between 0 and {domain.MAX_ORDERS}")
        v.require(0 <= request.max_units <= domain.MAX_UNITS, "max_units",
                  f"between 0 and {domain.MAX_UNITS}")
        v.require(0 <= request.max_weight_grams <= domain.MAX_WEIGHT_GRAMS, "max_weight_grams",
                  f"between 0 and {domain.MAX_WEIGHT_GRAMS}")
        v.require(len(request.request_id) <= MAX_REQUEST_ID
                  and lists.is_storable_text(request.request_id), "request_id",
                  f"at most {MAX_REQUEST_ID} characters")
        if request.HasField("due_after") and request.HasField("due_before"):
            v.require(request.due_after.ToDatetime() <= request.due_before.ToDatetime(),
                      "due_after", "must not be after due_before")
        v.raise_if_any()
        strategy = convert.STRATEGIES.get(
            request.strategy, domain.Strategy(self._settings.default_pick_strategy))
        settings = self._settings
        limits = domain.Limits(request.max_orders or settings.batch_max_orders,
                               request.max_units or settings.batch_max_units,
                               request.max_weight_grams or settings.batch_max_weight_grams)
        node = await self._nodes.get(request.node_id)
        if not node.picks_here:
            raise FailedPrecondition(f"node {node.node_id} picks in its own building",
                                     reason="NOT_PICKED_HERE")
        now = datetime.now(UTC)
        window = domain.Window(
            request.due_before.ToDatetime(tzinfo=UTC) if request.HasField("due_before")
            else promised_ship_time(node, now),
            request.due_after.ToDatetime(tzinfo=UTC) if request.HasField("due_after") else None)
        request_id = request.request_id or None
        async with self._sessions.begin() as session:
            if request_id and not await store.take_request(session, request_id,
                                                           request.node_id, now):
                ids = await store.lists_of_request(session, request_id)
            else:
                planned = domain.plan(strategy, await store.candidates(session, node.node_id),
                                      node.bins, limits, window)
                ids = await store.save(session, node.node_id, planned, request_id, now)
            found = await store.load(session, ids)
        return fulfilment_pb2.CreatePickListResponse(
            pick_lists=[convert.pick_list_to_proto(f) for f in found])

    async def GetPickList(
        self, request: fulfilment_pb2.GetPickListRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.PickList:
        list_id = parse_list_name(request.name)
        async with self._sessions.begin() as session:
            found = await store.load(session, [list_id])
        if not found:
            raise NotFound(f"{request.name} not found")
        return convert.pick_list_to_proto(found[0])

    async def GetPickListDocument(
        self, request: fulfilment_pb2.GetPickListDocumentRequest,
        context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.PickListDocument:
        list_id = parse_list_name(request.name)
        async with self._sessions.begin() as session:
            found = await store.load(session, [list_id])
            if not found:
                raise NotFound(f"{request.name} not found")
            titles = await store.titles(session, {stop.sku for stop in found[0].stops})
        document = convert.pick_list_document(found[0], titles)
        if not document.stops:
            raise FailedPrecondition(f"{request.name} has nothing left to pick",
                                     reason="NOTHING_TO_PICK")
        return fulfilment_pb2.PickListDocument(
            pick_list=request.name, content_type="application/pdf",
            content=documents.pick_list_pdf(document))

    async def ListPickLists(
        self, request: fulfilment_pb2.ListPickListsRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.ListPickListsResponse:
        query = {"filter": request.filter}
        parsed, after, size = lists.parameters(
            request, query, (datetime, uuid.UUID),
            fields={"node_id": filtering.text("=")}, max_page_size=MAX_PAGE_SIZE)
        node_id = next((t.value for t in parsed.conditions if t.field == "node_id"), None)
        async with self._sessions.begin() as session:
            keys = await store.list_page(session, node_id, limit=size + 1,
                                         after=(after[0], after[1]) if after else None)
            found = await store.load(session, [k.id for k in keys[:size]])
        return fulfilment_pb2.ListPickListsResponse(
            pick_lists=[convert.pick_list_to_proto(f) for f in found],
            next_page_token=lists.next_page_token(
                keys, size, lambda k: [k.create_time, str(k.id)], query))

    async def ConfirmPick(
        self, request: fulfilment_pb2.ConfirmPickRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.PickList:
        v = Violations()
        list_id = None
        try:
            list_id = parse_list_name(request.name)
        except InvalidArgument as error:
            v.items.extend(error.violations)
        v.require(request.sequence > 0, "sequence", "required, from 1")
        v.require(request.picked_quantity >= 0, "picked_quantity", "must not be negative")
        v.require(request.short_reason == 0 or request.short_reason in convert.REASONS,
                  "short_reason", "not a reason")
        v.raise_if_any()
        assert list_id is not None
        reason = convert.REASONS.get(request.short_reason)
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            stop = await store.lock_stop(session, list_id, request.sequence)
            if stop is None:
                raise NotFound(f"{request.name} has no stop {request.sequence}")
            if stop.confirmed:
                if (stop.picked, stop.short_reason) != (request.picked_quantity,
                                                        reason.value if reason else None):
                    raise FailedPrecondition(
                        f"stop {request.sequence} was confirmed with other figures",
                        reason="STOP_CONFIRMED")
            else:
                v.require(request.picked_quantity <= stop.quantity, "picked_quantity",
                          f"at most the stop's {stop.quantity} units")
                v.require(request.picked_quantity >= stop.quantity or reason is not None,
                          "short_reason", "required for a short pick")
                v.require(request.picked_quantity < stop.quantity or reason is None,
                          "short_reason", "only for a short pick")
                v.raise_if_any()
                rows = await store.stop_allocations(session, list_id, request.sequence)
                outcomes = domain.confirm_stop(domain.Stop(
                    stop.sequence, stop.bin_code, stop.zone, stop.sku, stop.quantity,
                    tuple(domain.Allocation(str(a.fulfilment_order_id), a.order_name,
                                            a.line_id, a.tote, a.quantity) for a in rows)),
                    request.picked_quantity)
                await store.record_confirmation(session, list_id, request.sequence,
                                                request.picked_quantity, reason, outcomes, now)
                if reason is not None:
                    await add_events(session, [
                        (convert.pick_shorted(stop.node_id, list_id, stop.bin_code, stop.sku,
                                              o, reason, now),
                         f"fulfilmentOrders/{o.allocation.fulfilment_order}", stop.node_id)
                        for o in outcomes if o.short])
            found = await store.load(session, [list_id])
        return convert.pick_list_to_proto(found[0])

    async def GetFloorStats(
        self, request: fulfilment_pb2.GetFloorStatsRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.FloorStats:
        if not request.node_id:
            raise InvalidArgument([FieldViolation("node_id", "required")])
        now = datetime.now(UTC)
        since = (request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time")
                 else now - timedelta(days=1))
        async with self._sessions.begin() as session:
            f = await store.floor(session, request.node_id, since, now)
            refusals = await packing_store.refusals_since(session, request.node_id, since)
        return fulfilment_pb2.FloorStats(
            node_id=request.node_id, pick_lists=f.pick_lists,
            units_per_list=f.units / f.pick_lists if f.pick_lists else 0.0,
            lines_per_stop=f.allocations / f.stops if f.stops else 0.0,
            stops_per_list=f.stops / f.pick_lists if f.pick_lists else 0.0,
            orders_past_cutoff=f.past_cutoff, pack_refusals=refusals, units_shorted=f.units_shorted)
