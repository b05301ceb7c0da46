"""Return policies' gRPC methods: create (idempotent by request_id), get, list, delete."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from oms.returns.v1 import returns_pb2
from oms_platform import lists
from oms_platform.errors import AlreadyExists, FailedPrecondition, NotFound, Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_returns.policies import convert, domain, store


def parse_name(name: str) -> str:
    policy_id = name.removeprefix(convert.PREFIX)
    if not name.startswith(convert.PREFIX) or not policy_id or "/" in policy_id:
        violations = Violations()
        violations.add("name", '"returnPolicies/{return_policy_id}"')
        violations.raise_if_any()
    return policy_id


class PoliciesApi:
    _sessions: async_sessionmaker[AsyncSession]

    async def CreateReturnPolicy(self, request: returns_pb2.CreateReturnPolicyRequest,
                                 context: grpc.aio.ServicerContext) -> returns_pb2.ReturnPolicy:
        violations = Violations()
        violations.require(0 < len(request.request_id) <= 200, "request_id",
                           "required, at most 200 characters")
        violations.require(request.HasField("return_policy"), "return_policy", "required")
        policy = convert.policy_from_request(violations, request)
        domain.check_policy(violations, policy)
        violations.raise_if_any()
        async with self._sessions.begin() as session:
            earlier = await store.by_request(session, request.request_id)
            if earlier is not None:
                return convert.policy_message(earlier)
            if await store.count(session) >= domain.MAX_POLICIES:
                raise FailedPrecondition(f"at most {domain.MAX_POLICIES} return policies",
                                         reason="TOO_MANY_POLICIES")
            row = await store.insert_policy(
                session, policy_id=policy.policy_id, request_id=request.request_id,
                channel=policy.channel, sku=policy.sku, category=policy.category,
                terms=convert.terms_json(policy), now=datetime.now(UTC))
        if row is not None:
            return convert.policy_message(row)
        async with self._sessions.begin() as session:
            earlier = await store.by_request(session, request.request_id)
            if earlier is not None:  # a concurrent twin won
                return convert.policy_message(earlier)
            taken = await store.by_scope(session, policy.channel, policy.sku, policy.category)
        name = convert.name_of(taken.id if taken is not None else policy.policy_id)
        raise AlreadyExists(f"{name} already exists" + (" for that scope" if taken else ""),
                            metadata={"name": name})

    async def GetReturnPolicy(self, request: returns_pb2.GetReturnPolicyRequest,
                              context: grpc.aio.ServicerContext) -> returns_pb2.ReturnPolicy:
        policy_id = parse_name(request.name)
        async with self._sessions.begin() as session:
            row = await store.get(session, policy_id)
        if row is None:
            raise NotFound(f"{request.name} not found")
        return convert.policy_message(row)

    async def ListReturnPolicies(self, request: returns_pb2.ListReturnPoliciesRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> returns_pb2.ListReturnPoliciesResponse:
        _, after, size = lists.parameters(request, {}, (str,),
                                          max_page_size=domain.MAX_PAGE_SIZE)
        async with self._sessions.begin() as session:
            rows = await store.page(session, after=after[0] if after else None, limit=size + 1)
        return returns_pb2.ListReturnPoliciesResponse(
            return_policies=[convert.policy_message(r) for r in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.id], {}))

    async def DeleteReturnPolicy(self, request: returns_pb2.DeleteReturnPolicyRequest,
                                 context: grpc.aio.ServicerContext) -> returns_pb2.ReturnPolicy:
        policy_id = parse_name(request.name)
        async with self._sessions.begin() as session:
            row = await store.remove(session, policy_id)
        if row is None:
            raise NotFound(f"{request.name} not found")
        return convert.policy_message(row)
