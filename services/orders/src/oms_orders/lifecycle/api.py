"""The lifecycle's gRPC methods: proto to domain, validate, one transaction, domain to proto."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import structlog
from oms.orders.v1 import orders_pb2
from oms_platform.errors import Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders.lifecycle import convert, domain, store

log = structlog.get_logger(__name__)

ACTOR_METADATA = "oms-actor"
"""gRPC metadata naming the user behind a back-office call, for the order's timeline."""


class LifecycleApi:
    """GetOrder and the back office's commands on an order: one transaction each, with the
    order's merged group locked."""

    _sessions: async_sessionmaker[AsyncSession]

    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        order_id = domain.require_order_id(request.name)
        async with self._sessions.begin() as session:
            order = await store.get(session, order_id)
            if order is None:
                raise domain.order_not_found(request.name)
            entries = (await store.timeline(session, order_id)
                       if request.view == orders_pb2.ORDER_VIEW_FULL else None)
        return convert.order_to_proto(order, entries)

    # --- commands on an order ----------------------------------------------------------------

    async def UpdateOrder(
        self, request: orders_pb2.UpdateOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        paths = list(request.update_mask.paths)
        domain.validate_update_mask(paths).raise_if_any()
        changes: dict[str, Any] = {}
        if "tags" in paths:
            changes["tags"] = list(request.order.tags)
        if "gift_note" in paths:
            changes["gift_note"] = request.order.gift_note
        if "priority" in paths:
            changes["priority"] = request.order.priority
        if "promise_time" in paths:
            changes["promise_time"] = convert.optional_time(request.order, "promise_time",
                                                            "order.promise_time")
        actor = _actor(context)

        async def command(order: domain.Order, group: list[domain.Order],
                          at: datetime) -> list[domain.Order]:
            return [order] if order.update(actor=actor, at=at, **changes) else []

        return await self._command(request.order.name, command, field="order.name")

    async def RecordPayment(
        self, request: orders_pb2.RecordPaymentRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        draft = convert.payment_draft_from_proto(request.payment)
        domain.validate_payment(draft).raise_if_any()
        actor = _actor(context, default=draft.provider or "payments")

        async def command(order: domain.Order, group: list[domain.Order],
                          at: datetime) -> list[domain.Order]:
            payment = domain.payment_of(draft, order.currency_code, at)
            return [order] if order.record_payment(payment, at=at, actor=actor) else []

        return await self._command(request.name, command)

    async def HoldOrder(
        self, request: orders_pb2.HoldOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        actor = _actor(context)

        async def command(order: domain.Order, group: list[domain.Order],
                          at: datetime) -> list[domain.Order]:
            order.place_hold(request.reason, actor=actor, at=at)
            return [order]

        return await self._command(request.name, command, request_id=request.request_id,
                                   method="HoldOrder")

    async def ReleaseHold(
        self, request: orders_pb2.ReleaseHoldRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        actor = _actor(context)

        async def command(order: domain.Order, group: list[domain.Order],
                          at: datetime) -> list[domain.Order]:
            return [order] if order.release_hold(request.hold_id, actor=actor, at=at) else []

        return await self._command(request.name, command)

    async def CancelOrder(
        self, request: orders_pb2.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        actor = _actor(context)
        lines = [(x.line_id, x.quantity) for x in request.lines] or None

        async def command(order: domain.Order, group: list[domain.Order],
                          at: datetime) -> list[domain.Order]:
            changed = order.cancel(lines, reason=request.reason.strip() or "cancelled",
                                   actor=actor, at=at)
            return [order] if changed else []

        return await self._command(request.name, command, request_id=request.request_id,
                                   method="CancelOrder")

    async def MergeOrders(
        self, request: orders_pb2.MergeOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.MergeOrdersResponse:
        ids = domain.merge_ids(request.names)
        actor = _actor(context)
        at = datetime.now(UTC)
        async with self._sessions.begin() as session:
            # Every order and its group locked at once, in id order, as everywhere.
            groups = await store.load_groups(session, ids)
            missing = next((i for i in ids if i not in groups), None)
            if missing is not None:
                raise domain.order_not_found(domain.order_name(missing))
            loaded = {o.id: o for group in groups.values() for o in group}
            requested = [loaded[i] for i in ids]
            domain.merge(requested, actor=actor, at=at, loaded=list(loaded.values()))
            group_id = requested[0].merge_group
            members = [o for o in loaded.values() if o.merge_group == group_id]
            releases = domain.release_ready(sorted(members, key=lambda o: o.id), at=at)
            await store.save(session, members, releases)
            names = [o.name for o in members]
            for order in members:
                order.merged_with = tuple(n for n in names if n != order.name)
        log.info("orders merged", orders=names, released=bool(releases))
        return orders_pb2.MergeOrdersResponse(
            orders=[convert.order_to_proto(o) for o in requested])

    async def SplitOrder(
        self, request: orders_pb2.SplitOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        actor = _actor(context)

        async def command(order: domain.Order, group: list[domain.Order],
                          at: datetime) -> list[domain.Order]:
            changed = domain.split(order, group, actor=actor, at=at)
            order.merged_with = ()
            return changed

        return await self._command(request.name, command)

    async def _command(self, name: str, command: Any, *, field: str = "name",
                       request_id: str = "", method: str = "") -> orders_pb2.Order:
        """Loads the order (and its merged group) locked, runs ``command``, releases what
        became releasable, and saves what changed, in one transaction."""
        order_id = domain.require_order_id(name, field)
        violations = Violations()
        domain.validate_text(violations, "request_id", request_id, domain.MAX_REQUEST_ID_LENGTH)
        violations.raise_if_any()
        at = datetime.now(UTC)
        async with self._sessions.begin() as session:
            group = await store.load_group(session, order_id)
            order = next((o for o in group if o.id == order_id), None)
            if order is None:
                raise domain.order_not_found(name)
            if request_id and not await store.claim_command(
                    session, request_id, order_id, method):
                return convert.order_to_proto(order)
            changed: list[domain.Order] = await command(order, group, at)
            releases: list[domain.Release] = []
            for members in domain.release_units(changed, group):
                releases += domain.release_ready(members, at=at)
            moved = [o for o in group if o.release_time == at]
            await store.save(session, list({o.id: o for o in changed + moved}.values()),
                             releases)
        return convert.order_to_proto(order)


def _actor(context: grpc.aio.ServicerContext, default: str = "api") -> str:
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA and value:
            return str(value)[:100]
    return default


