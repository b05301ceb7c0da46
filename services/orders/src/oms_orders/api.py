"""The gRPC API: proto to domain, validate, one transaction, domain to proto."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog
from oms.orders.v1 import orders_pb2, orders_pb2_grpc
from oms_platform.errors import DomainError, FieldViolation, InvalidArgument, NotFound, Violations
from oms_platform.grpc_errors import to_status
from oms_platform.pagination import PageTokenError, decode_page_token, encode_page_token
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_orders import convert, domain, filters, repository
from oms_orders.settings import OrdersSettings

log = structlog.get_logger(__name__)

ACTOR_METADATA = "oms-actor"
"""gRPC metadata naming the user behind a back-office call, for the order's timeline."""
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class OrdersServicer(orders_pb2_grpc.OrdersServiceServicer):
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 settings: OrdersSettings | None = None) -> None:
        self._sessions = sessions
        self._settings = settings or OrdersSettings()
        self._policy = self._settings.capture_policy()

    # --- capture -----------------------------------------------------------------------------

    async def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        async with self._sessions.begin() as session:
            order = await self._capture(session, request, prefix="order")
        return convert.order_to_proto(order)

    async def BatchCreateOrders(
        self, request: orders_pb2.BatchCreateOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.BatchCreateOrdersResponse:
        if not 0 < len(request.requests) <= self._settings.max_batch_size:
            raise InvalidArgument([FieldViolation(
                "requests", f"1 to {self._settings.max_batch_size} orders")])
        results: dict[int, orders_pb2.BatchCreateOrderResult] = {}
        # One transaction for the batch; a refused order writes nothing, so the others
        # commit together. Inserted in the order of their unique keys, answered in request
        # order.
        keys = [(r.order.channel, r.order.external_order_id, r.request_id)
                for r in request.requests]
        async with self._sessions.begin() as session:
            for index in repository.insert_order(keys):
                item = request.requests[index]
                try:
                    order = await self._capture(session, item, prefix=f"requests[{index}].order")
                except DomainError as error:
                    results[index] = orders_pb2.BatchCreateOrderResult(error=to_status(error))
                else:
                    results[index] = orders_pb2.BatchCreateOrderResult(
                        order=convert.order_to_proto(order))
        return orders_pb2.BatchCreateOrdersResponse(
            results=[results[index] for index in range(len(keys))])

    async def _capture(
        self, session: AsyncSession, request: orders_pb2.CreateOrderRequest, *, prefix: str
    ) -> domain.Order:
        draft = convert.draft_from_proto(request.order, prefix=prefix)
        products = await repository.products(session, (line.sku for line in draft.lines))
        order = domain.place_order(
            draft, order_id=uuid.uuid4(), now=datetime.now(UTC), request_id=request.request_id,
            products=products, policy=self._policy, prefix=prefix,
        )
        request_id = request.request_id or None
        if await repository.add(session, order, request_id=request_id):
            log.info("order created", order=order.name, channel=order.channel,
                     external_order_id=order.external_order_id, request_id=request_id)
            return order
        existing = await repository.find_duplicate(
            session, request_id=request_id, channel=order.channel,
            external_order_id=order.external_order_id,
        )
        if existing is None:
            raise RuntimeError(f"{order.name} conflicted with an order that cannot be found")
        log.info("order already captured", order=existing.name, channel=order.channel,
                 external_order_id=order.external_order_id, request_id=request_id)
        return existing

    # --- reading -----------------------------------------------------------------------------

    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        order_id = _order_id(request.name)
        async with self._sessions.begin() as session:
            order = await repository.get(session, order_id)
            if order is None:
                raise _not_found(request.name)
            entries = (await repository.timeline(session, order_id)
                       if request.view == orders_pb2.ORDER_VIEW_FULL else None)
        return convert.order_to_proto(order, entries)

    async def ListOrders(
        self, request: orders_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.ListOrdersResponse:
        violations = Violations()
        violations.require(0 <= request.page_size, "page_size", "must not be negative")
        violations.raise_if_any()
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        parsed = filters.parse(request.filter)
        after = _read_token(request.page_token, request.filter)
        async with self._sessions.begin() as session:
            found = await repository.list_orders(
                session, repository.conditions(parsed), limit=size + 1, after=after)
        page = found[:size]
        token = (_make_token(page[-1], request.filter) if len(found) > size else "")
        return orders_pb2.ListOrdersResponse(
            orders=[convert.order_to_proto(o) for o in page], next_page_token=token)

    async def CountOrders(
        self, request: orders_pb2.CountOrdersRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CountOrdersResponse:
        parsed = filters.parse(request.filter)
        async with self._sessions.begin() as session:
            counts = await repository.count_orders(session, repository.conditions(parsed))
        S = domain.OrderStatus
        return orders_pb2.CountOrdersResponse(
            counts=[orders_pb2.StatusCount(status=convert.status_to_proto(status), count=n)
                    for status, n in sorted(counts.items(), key=lambda x: x[0].value)],
            payment_required=counts.get(S.PAYMENT_PENDING, 0),
            waiting_for_stock=counts.get(S.PENDING_ALLOCATION, 0)
            + counts.get(S.AWAITING_STOCK, 0),
            ready_to_release=counts.get(S.ALLOCATED, 0),
            ready_to_ship=counts.get(S.RELEASED, 0) + counts.get(S.PARTIALLY_SHIPPED, 0),
            on_hold=counts.get(S.ON_HOLD, 0),
            in_transit=counts.get(S.SHIPPED, 0),
            total=sum(counts.values()),
        )

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
            groups = await repository.load_groups(session, ids)
            missing = next((i for i in ids if i not in groups), None)
            if missing is not None:
                raise _not_found(domain.order_name(missing))
            loaded = {o.id: o for group in groups.values() for o in group}
            requested = [loaded[i] for i in ids]
            domain.merge(requested, actor=actor, at=at, loaded=list(loaded.values()))
            group_id = requested[0].merge_group
            members = [o for o in loaded.values() if o.merge_group == group_id]
            releases = domain.release_ready(sorted(members, key=lambda o: o.id), at=at)
            await repository.save(session, members, releases)
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
        order_id = _order_id(name, field)
        violations = Violations()
        domain.validate_text(violations, "request_id", request_id, domain.MAX_REQUEST_ID_LENGTH)
        violations.raise_if_any()
        at = datetime.now(UTC)
        async with self._sessions.begin() as session:
            group = await repository.load_group(session, order_id)
            order = next((o for o in group if o.id == order_id), None)
            if order is None:
                raise _not_found(name)
            if request_id and not await repository.claim_command(
                    session, request_id, order_id, method):
                return convert.order_to_proto(order)
            changed: list[domain.Order] = await command(order, group, at)
            releases: list[domain.Release] = []
            for members in _groups(changed, group):
                releases += domain.release_ready(members, at=at)
            await repository.save(session, _unique(changed + [o for o in group
                                                              if o.release_time == at]),
                                  releases)
        return convert.order_to_proto(order)


def _groups(changed: Sequence[domain.Order], group: Sequence[domain.Order]
            ) -> list[list[domain.Order]]:
    """The release units among the changed orders: each merged group, or a lone order."""
    units: dict[Any, list[domain.Order]] = {}
    for order in changed:
        key = order.merge_group or order.id
        if key not in units:
            units[key] = sorted((o for o in group if (o.merge_group or o.id) == key),
                                key=lambda o: o.id) or [order]
    return list(units.values())


def _unique(orders: Sequence[domain.Order]) -> list[domain.Order]:
    return list({o.id: o for o in orders}.values())


def _actor(context: grpc.aio.ServicerContext, default: str = "api") -> str:
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA and value:
            return str(value)[:100]
    return default


def _order_id(name: str, field: str = "name") -> uuid.UUID:
    order_id = domain.parse_order_name(name)
    if order_id is None:
        raise InvalidArgument([FieldViolation(field, 'must be "orders/{uuid}"')])
    return order_id


def _not_found(name: str) -> NotFound:
    return NotFound(f"{name} not found", reason="ORDER_NOT_FOUND", metadata={"name": name})


def _make_token(last: domain.Order, expression: str) -> str:
    return encode_page_token([last.create_time.isoformat(), str(last.id)],
                             {"filter": expression})


def _read_token(token: str, expression: str) -> tuple[datetime, uuid.UUID] | None:
    """The (create_time, id) to continue after; INVALID_ARGUMENT on ``page_token`` for a
    token this list did not issue, whatever it holds."""
    try:
        after = decode_page_token(token, {"filter": expression})
    except PageTokenError as error:
        raise InvalidArgument([FieldViolation("page_token", str(error))]) from None
    if after is None:
        return None
    try:
        create_time, order_id = after
        return datetime.fromisoformat(create_time), uuid.UUID(order_id)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument([FieldViolation(
            "page_token", "not a page token of this list")]) from None
