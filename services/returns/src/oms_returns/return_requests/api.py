"""Return requests' gRPC methods: CreateReturn (idempotent by request_id), GetReturn,
ListReturns, ApproveReturn and RejectReturn.

A return is checked against a copy of the order read from the orders service before any
transaction (a call must not hold a row lock); its units are then claimed in the same
transaction as the return's rows and its events, so a request that fails any check stores
nothing. The return label is bought after that transaction commits (``LabelsApi``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import grpc
import structlog
from oms.orders.v1 import orders_pb2
from oms.returns.v1 import returns_pb2
from oms_platform import lists
from oms_platform.errors import NotFound, Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_returns.policies import convert as policies_convert
from oms_returns.policies import domain as policies_domain
from oms_returns.policies import store as policies_store
from oms_returns.return_requests import convert, domain, store
from oms_returns.return_requests.client import Orders
from oms_returns.settings import ReturnsSettings
from oms_returns.tables import add_events

log = structlog.get_logger(__name__)


class ReturnRequestsApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: ReturnsSettings
    _orders: Orders

    # LabelsApi's: buys the approved return's label (never twice) and records it.
    buy_label: Callable[[store.Return], Awaitable[store.Return]]

    async def _load(self, session: AsyncSession, return_id: uuid.UUID, name: str, *,
                    for_update: bool = False) -> store.Return:
        found = await store.load(session, [return_id], for_update=for_update)
        if not found:
            raise NotFound(f"{name} not found")
        return found[0]

    async def _by_request(self, request_id: str) -> store.Return | None:
        async with self._sessions.begin() as session:
            return_id = await store.id_by_request(session, request_id)
            return (await store.load(session, [return_id]))[0] if return_id else None

    async def CreateReturn(self, request: returns_pb2.CreateReturnRequest,
                           context: grpc.aio.ServicerContext) -> returns_pb2.Return:
        wanted = convert.request_of(request)
        violations = Violations()
        domain.check_request(violations, wanted)
        violations.raise_if_any()
        earlier = await self._by_request(wanted.request_id)
        if earlier is not None:
            return convert.return_message(earlier)
        order = await self._orders.get(wanted.order)
        if order is None:
            violations.add("order", f"{wanted.order} not found")
            violations.raise_if_any()
        assert order is not None
        facts = convert.order_facts(order)
        async with self._sessions.begin() as session:
            policies = [policies_convert.policy_of(row) for row in
                        await policies_store.every(session, policies_domain.MAX_POLICIES)]
            in_returns = await store.in_returns(session, facts.name,
                                                [line.line_id for line in wanted.lines])
        now = datetime.now(UTC)
        assessment = domain.assess(wanted, facts, policies, in_returns, now)
        weight = domain.parcel_grams(facts, assessment.units_back,
                                     self._settings.default_parcel_grams)
        found = await self._create(wanted, order, facts, assessment, weight, now)
        log.info("return requested", order=facts.name, **{"return": found.row.id},
                 state=found.row.state, review_reasons=list(found.row.review_reasons))
        if found.row.state == domain.State.APPROVED.value and assessment.units_back:
            found = await self.buy_label(found)
        return convert.return_message(found)

    async def _create(self, wanted: domain.ReturnRequest, order: orders_pb2.Order,
                      facts: domain.OrderFacts, assessment: domain.Assessment, weight: int,
                      now: datetime) -> store.Return:
        """The return's rows, its units claimed and its events, in one transaction; the
        first return of a twin request when it won."""
        return_id = uuid.uuid4()
        try:
            async with self._sessions.begin() as session:
                values = convert.return_values(return_id, wanted, order, facts, assessment,
                                               weight, now)
                if not await store.insert_return(session, values):
                    found = None
                else:
                    await store.claim_units(session, facts.name, [
                        (line.request.line_id, line.delivered, line.request.quantity)
                        for line in assessment.lines])
                    await store.insert_lines(session, convert.line_values(return_id,
                                                                          assessment))
                    (found,) = await store.load(session, [return_id])
                    events = [convert.return_requested(found)]
                    if assessment.approved:
                        events.append(convert.return_approved(found, by_person=False))
                    await add_events(session, [(e, convert.name_of(return_id), None)
                                               for e in events])
        except store.LostRace as lost:
            violations = Violations()
            for index, line in enumerate(wanted.lines):
                if line.line_id in lost.lines:
                    violations.add(f"lines[{index}].quantity",
                                   f"more units of line {line.line_id} than are returnable: "
                                   "another return took them meanwhile")
            violations.raise_if_any()
            raise
        if found is None:
            found = await self._by_request(wanted.request_id)
            assert found is not None
        return found

    async def GetReturn(self, request: returns_pb2.GetReturnRequest,
                        context: grpc.aio.ServicerContext) -> returns_pb2.Return:
        return_id = convert.parse_name(request.name)
        async with self._sessions.begin() as session:
            return convert.return_message(await self._load(session, return_id, request.name))

    async def ListReturns(self, request: returns_pb2.ListReturnsRequest,
                          context: grpc.aio.ServicerContext) -> returns_pb2.ListReturnsResponse:
        query = {"filter": request.filter}
        parsed, after, size = lists.parameters(
            request, query, (datetime, uuid.UUID), fields=domain.FIELDS,
            max_page_size=domain.MAX_PAGE_SIZE)
        async with self._sessions.begin() as session:
            keys = await store.list_ids(session, store.conditions(parsed), limit=size + 1,
                                        after=(after[0], after[1]) if after else None)
            found = await store.load(session, [key.id for key in keys[:size]])
        return returns_pb2.ListReturnsResponse(
            returns=[convert.return_message(r) for r in found],
            next_page_token=lists.next_page_token(
                keys, size, lambda key: [key.create_time, str(key.id)], query))

    async def ApproveReturn(self, request: returns_pb2.ApproveReturnRequest,
                            context: grpc.aio.ServicerContext) -> returns_pb2.Return:
        return_id = convert.parse_name(request.name)
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            found = await self._load(session, return_id, request.name, for_update=True)
            if domain.approve(domain.State(found.row.state)):
                await store.change(session, return_id, state=domain.State.APPROVED.value,
                                   approve_time=now, update_time=now)
                found = await self._load(session, return_id, request.name)
                await add_events(session, [(convert.return_approved(found, by_person=True),
                                            request.name, None)])
                log.info("return approved", **{"return": request.name})
        if not found.row.label_name and any(not line.keep_it for line in found.lines):
            found = await self.buy_label(found)
        return convert.return_message(found)

    async def RejectReturn(self, request: returns_pb2.RejectReturnRequest,
                           context: grpc.aio.ServicerContext) -> returns_pb2.Return:
        return_id = convert.parse_name(request.name)
        violations = Violations()
        violations.require(0 < len(request.reason) <= domain.MAX_REJECT_REASON, "reason",
                           f"required, at most {domain.MAX_REJECT_REASON} characters")
        violations.raise_if_any()
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            found = await self._load(session, return_id, request.name, for_update=True)
            if domain.reject(domain.State(found.row.state)):
                await store.change(session, return_id, state=domain.State.REJECTED.value,
                                   reject_reason=request.reason, update_time=now)
                await store.release_units(session, found.row.order_name,
                                          [(line.line_id, line.quantity)
                                           for line in found.lines])
                found = await self._load(session, return_id, request.name)
                await add_events(session, [(convert.return_rejected(found), request.name,
                                            None)])
                log.info("return rejected", **{"return": request.name})
        return convert.return_message(found)
