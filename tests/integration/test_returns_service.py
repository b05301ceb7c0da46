"""Returns over real gRPC, PostgreSQL and NATS, with orders and shipping running beside it: a
delivered order's return approved by its policy, its label bought once however often it is
approved, `ReturnRequested` / `ReturnApproved` on JetStream; partial returns of one line,
even concurrent, never above what was bought; a policy that queues for a person; keep-it
below a threshold; bad input refused field by field, storing nothing."""
# The kit's fixtures are imported by name and taken as arguments of the same name.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from oms.common.v1 import common_pb2
from oms.returns.v1 import events_pb2, returns_pb2
from oms.shipping.v1 import shipping_pb2
from oms_devtools import demo
from oms_devtools.testkit import eventually, new_id
from oms_platform.events import decode
from oms_platform.migrations import alembic_config, upgrade
from oms_platform.service import Service
from oms_returns.app import MIGRATIONS
from oms_returns.return_requests import store as returns_store
from oms_returns.tables import metadata, returned_units, returns
from returns_kit import (  # noqa: F401 (fixtures)
    OrdersStub,
    ShippingStub,
    Stub,
    cut_off,
    deliver,
    delivered_order,
    js,
    orders,
    orders_service,
    placed_order,
    returns_service,
    returns_url,
    ship,
    shipping,
    stub,
    violations_of,
)
from sqlalchemy import create_engine, func, select, text

R = returns_pb2
outbox = metadata.tables["outbox"]
EVENTS = (events_pb2.ReturnRequested, events_pb2.ReturnApproved, events_pb2.ReturnRejected)
REASON = events_pb2


def eur(amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code="EUR", amount=amount)


def test_the_migrations_build_the_tables_as_declared_and_go_back(
        database_factory: Callable[[str], str]) -> None:
    url = database_factory("returns_schema")
    upgrade(MIGRATIONS, url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True})
            assert list(compare_metadata(context, metadata)) == []
        command.downgrade(alembic_config(MIGRATIONS, url), "0001")
        with engine.connect() as conn:
            assert not conn.exec_driver_sql(
                "SELECT to_regclass('returns') IS NOT NULL OR "
                "to_regclass('return_policies') IS NOT NULL").scalar()
    finally:
        engine.dispose()


async def policy(stub: Stub, **terms: object) -> R.ReturnPolicy:
    return await stub.CreateReturnPolicy(R.CreateReturnPolicyRequest(
        request_id=new_id("policy"), return_policy_id=new_id("p").lower(),
        return_policy=R.ReturnPolicy(**terms)))  # type: ignore[arg-type]


def line(line_id: str, quantity: int, reason: int = REASON.RETURN_REASON_SIZE_OR_FIT,
         note: str = "") -> R.ReturnLine:
    return R.ReturnLine(line_id=line_id, quantity=quantity, reason=reason,  # type: ignore[arg-type]
                        note=note)


def create(order: str, *lines: R.ReturnLine, request_id: str | None = None,
           **fields: object) -> R.CreateReturnRequest:
    return R.CreateReturnRequest(request_id=request_id or new_id("rma"), order=order,
                                 lines=list(lines), **fields)  # type: ignore[arg-type]


async def events_of(js: JetStreamContext, name: str, count: int) -> dict[str, Any]:
    """The returns events of one return by type (``ReturnApproved``), once ``count`` are
    there, each type once. By type, not in stream order: the relay publishes a batch's
    events concurrently."""
    found = await _read_events(js, name, count)
    by_type = {kind.rsplit(".", 1)[-1]: message for kind, message in found}
    assert len(by_type) == len(found), [kind for kind, _ in found]
    return by_type


async def _read_events(js: JetStreamContext, name: str, count: int
                       ) -> list[tuple[str, object]]:
    async def read() -> list[tuple[str, object]]:
        consumer = new_id("probe")
        await js.add_consumer("OMS_RETURNS", ConsumerConfig(
            name=consumer, ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
            filter_subject="oms.returns.>", inactive_threshold=30.0))
        subscription = await js.pull_subscribe_bind(consumer=consumer, stream="OMS_RETURNS")
        found = []
        try:
            while True:
                try:
                    batch = await subscription.fetch(256, timeout=1.0)
                except TimeoutError:
                    break
                for message in batch:
                    headers = message.headers or {}
                    if headers.get("ce-subject") == name:
                        found.append((headers["ce-type"], decode(headers, message.data, EVENTS)))
                if batch[-1].metadata.num_pending == 0:
                    break
        finally:
            await subscription.unsubscribe()
            await js.delete_consumer("OMS_RETURNS", consumer)
        return found

    return await eventually(read, until=lambda found: len(found) >= count,
                            what=f"{count} events of {name}")


async def labels_of(shipping: ShippingStub, name: str) -> list[shipping_pb2.Label]:
    return list((await shipping.ListLabels(shipping_pb2.ListLabelsRequest(
        filter=f'package = "{name}"'))).labels)


async def test_a_delivered_orders_return_is_approved_and_labelled_once(  # type: ignore[no-untyped-def]
        stub: Stub, orders: OrdersStub, shipping, js: JetStreamContext) -> None:
    channel = new_id("shop")
    terms = await policy(stub, channel=channel, window_days=30, auto_approve=True,
                         customer_pays_return_shipping=True, return_shipping_fee=eur("4.95"),
                         restocking_fee_bps=1000, conditions=[R.ITEM_CONDITION_UNUSED])
    order = await delivered_order(orders, js, [("SKU-COAT", 3, "40.00"), ("SKU-HAT", 1, "15.00")],
                                  channel=channel)
    request = create(order.name, line("1", 2, note="too small"), note="please")

    rma = await stub.CreateReturn(request)

    assert rma.state == R.RETURN_STATE_APPROVED and not rma.review_reasons
    (returned,) = rma.lines
    assert (returned.sku, returned.quantity, returned.policy) == ("SKU-COAT", 2, terms.name)
    # 10 % of 2 x 40.00.
    assert (returned.unit_price, returned.restocking_fee) == (eur("40.00"), eur("8.00"))
    assert list(returned.conditions) == [R.ITEM_CONDITION_UNUSED]
    assert (rma.shipping_payer, rma.return_shipping_fee) == (R.SHIPPING_PAYER_CUSTOMER,
                                                            eur("4.95"))
    assert rma.label.tracking_number and not rma.label.error
    (bought,) = await labels_of(shipping[1], rma.name)
    assert (bought.name, bought.tracking_number) == (rma.label.label, rma.label.tracking_number)
    assert bought.destination.organization == "McMurdo Returns"

    # Retried, approved again: the same return, no second label.
    assert await stub.CreateReturn(request) == rma
    again = await stub.ApproveReturn(R.ApproveReturnRequest(name=rma.name))
    assert again.label == rma.label
    assert len(await labels_of(shipping[1], rma.name)) == 1
    document = await stub.GetReturnLabelDocument(R.GetReturnLabelDocumentRequest(
        name=rma.name))
    assert document.content_type == "application/pdf" and document.content.startswith(b"%PDF")

    found = await events_of(js, rma.name, 2)
    assert set(found) == {"ReturnRequested", "ReturnApproved"}
    requested, approved = found["ReturnRequested"], found["ReturnApproved"]
    assert getattr(requested, "return") == rma.name and not requested.awaiting_review
    assert [(x.line_id, x.quantity, x.reason) for x in requested.lines] == [
        ("1", 2, REASON.RETURN_REASON_SIZE_OR_FIT)]
    assert approved.order == order.name and not approved.by_person


async def test_partial_returns_of_a_line_never_exceed_what_was_bought(  # type: ignore[no-untyped-def]
        stub: Stub, orders: OrdersStub, js: JetStreamContext, returns_service: Service) -> None:
    channel = new_id("shop")
    await policy(stub, channel=channel, window_days=30, auto_approve=True)
    order = await delivered_order(orders, js, [("SKU-MUG", 3, "9.00")], channel=channel)
    await stub.CreateReturn(create(order.name, line("1", 2)))
    assert await violations_of(stub.CreateReturn(create(order.name, line("1", 2)))) == [
        "lines[0].quantity"]
    await stub.CreateReturn(create(order.name, line("1", 1)))
    assert await violations_of(stub.CreateReturn(create(order.name, line("1", 1)))) == [
        "lines[0].quantity"]

    # Five concurrent returns of one unit each of a line of three: three pass, whichever.
    racing = await delivered_order(orders, js, [("SKU-MUG", 3, "9.00")], channel=channel)
    results = await asyncio.gather(*(stub.CreateReturn(create(racing.name, line("1", 1)))
                                     for _ in range(5)), return_exceptions=True)
    passed = [r for r in results if isinstance(r, R.Return)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert (len(passed), len(refused)) == (3, 2)
    assert {error.code() for error in refused} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert returns_service.runtime is not None
    async with returns_service.runtime.engine.connect() as conn:
        claimed = await conn.scalar(select(returned_units.c.requested).where(
            returned_units.c.order_name == racing.name, returned_units.c.line_id == "1"))
        stored = await conn.scalar(select(func.count()).select_from(returns).where(
            returns.c.order_name == racing.name))
    assert (claimed, stored) == (3, 3)

    # The channel's five returns, two a page, newest first.
    listed: list[R.Return] = []
    request = R.ListReturnsRequest(filter=f'channel = "{channel}"', page_size=2)
    while True:
        page = await stub.ListReturns(request)
        assert len(page.returns) <= 2
        listed += page.returns
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert len({r.name for r in listed}) == len(listed) == 5
    times = [(r.create_time.seconds, r.create_time.nanos) for r in listed]
    assert times == sorted(times, reverse=True)


async def test_a_claim_waits_for_the_claim_before_it_and_then_counts_its_units(
        returns_service: Service) -> None:
    """The unit claim itself, with the order of the two writers made certain: the second
    waits on the first's row (seen in pg_stat_activity) until it commits, then finds too
    few units left."""
    assert returns_service.runtime is not None
    sessions, engine = returns_service.runtime.sessions, returns_service.runtime.engine
    order = f"orders/{uuid.uuid4()}"

    async def second() -> None:
        async with sessions.begin() as session:
            await returns_store.claim_units(session, order, [("1", 3, 2)])

    async def waiting() -> bool:
        async with engine.connect() as conn:
            return bool(await conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%returned_units%'")))

    async with sessions.begin() as first:
        await returns_store.claim_units(first, order, [("1", 3, 2)])
        task = asyncio.create_task(second())
        await eventually(waiting, what="the second claim waiting on the first")
    with pytest.raises(returns_store.LostRace):
        await task
    async with engine.connect() as conn:
        assert await conn.scalar(select(returned_units.c.requested).where(
            returned_units.c.order_name == order)) == 2


async def test_a_return_the_policy_does_not_approve_waits_for_a_person(  # type: ignore[no-untyped-def]
        stub: Stub, orders: OrdersStub, shipping, js: JetStreamContext) -> None:
    channel = new_id("shop")
    await policy(stub, channel=channel, window_days=30, auto_approve=True)
    hygiene = await policy(stub, channel=channel, category="hygiene",
                           category_sku_prefixes=["HYG-"], non_returnable=True)
    order = await delivered_order(orders, js, [("HYG-BRUSH", 2, "6.00"), ("SKU-CUP", 1, "8.00")],
                                  channel=channel)

    queued = await stub.CreateReturn(create(order.name, line("1", 1), line("2", 1)))

    assert queued.state == R.RETURN_STATE_REQUESTED and not queued.label.label
    policy_id = hygiene.name.removeprefix("returnPolicies/")
    assert list(queued.review_reasons) == [
        f"line 1: not returnable (policy {policy_id})",
        f"line 1: policy {policy_id} asks for a person's approval"]
    waiting = await stub.ListReturns(R.ListReturnsRequest(
        filter=f'state = REQUESTED AND order = "{order.name}"'))
    assert [r.name for r in waiting.returns] == [queued.name]
    assert not await labels_of(shipping[1], queued.name)

    approved = await stub.ApproveReturn(R.ApproveReturnRequest(name=queued.name))
    assert approved.state == R.RETURN_STATE_APPROVED and approved.label.tracking_number
    found = await events_of(js, queued.name, 2)
    assert found["ReturnRequested"].awaiting_review and found["ReturnApproved"].by_person

    # Rejected, its units are returnable again.
    second = await stub.CreateReturn(create(order.name, line("1", 1)))
    rejected = await stub.RejectReturn(R.RejectReturnRequest(name=second.name,
                                                             reason="final sale"))
    assert (rejected.state, rejected.reject_reason) == (R.RETURN_STATE_REJECTED, "final sale")
    assert set(await events_of(js, second.name, 2)) == {"ReturnRequested", "ReturnRejected"}
    await stub.CreateReturn(create(order.name, line("1", 1)))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ApproveReturn(R.ApproveReturnRequest(name=second.name))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_below_the_keep_it_threshold_nothing_comes_back(  # type: ignore[no-untyped-def]
        stub: Stub, orders: OrdersStub, shipping, js: JetStreamContext) -> None:
    channel = new_id("shop")
    await policy(stub, channel=channel, window_days=30, auto_approve=True,
                 outcomes=[R.RETURN_OUTCOME_REFUND, R.RETURN_OUTCOME_KEEP_IT],
                 keep_it_below=eur("5.00"))
    order = await delivered_order(orders, js, [("SKU-PEN", 2, "1.50")], channel=channel)
    kept = await stub.CreateReturn(create(order.name, line("1", 2,
                                                           REASON.RETURN_REASON_DEFECTIVE)))
    assert kept.state == R.RETURN_STATE_APPROVED and kept.lines[0].keep_it
    assert not kept.label.label and not await labels_of(shipping[1], kept.name)
    assert kept.shipping_payer == R.SHIPPING_PAYER_MERCHANT


async def test_a_label_shipping_could_not_sell_is_bought_by_the_next_approval(  # type: ignore[no-untyped-def]
        stub: Stub, cut_off: Stub, orders: OrdersStub, shipping, js: JetStreamContext,
        returns_service: Service) -> None:
    channel = new_id("shop")
    await policy(stub, channel=channel, window_days=30, auto_approve=True)
    order = await delivered_order(orders, js, [("SKU-LAMP", 1, "30.00")], channel=channel)

    stranded = await cut_off.CreateReturn(create(order.name, line("1", 1)))

    assert stranded.state == R.RETURN_STATE_APPROVED and not stranded.label.label
    assert stranded.label.error.startswith("shipping: UNAVAILABLE")
    labelled = await stub.ApproveReturn(R.ApproveReturnRequest(name=stranded.name))
    assert labelled.label.tracking_number and not labelled.label.error
    assert [label.name for label in await labels_of(shipping[1], stranded.name)] == [
        labelled.label.label]
    # Approved once: the retried approval bought the label and wrote no event more.
    assert set(await events_of(js, stranded.name, 2)) == {"ReturnRequested", "ReturnApproved"}
    assert returns_service.runtime is not None
    async with returns_service.runtime.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.headers["ce-subject"].astext == stranded.name)) == 2


async def test_bad_input_is_named_field_by_field_and_stores_nothing(  # type: ignore[no-untyped-def]
        stub: Stub, orders: OrdersStub, js: JetStreamContext, returns_service: Service) -> None:
    channel = new_id("shop")
    await policy(stub, channel=channel, window_days=30, auto_approve=True)
    order = await placed_order(orders, [("SKU-A", 2, "10.00"), ("SKU-B", 1, "10.00")],
                               channel=channel)
    package = await ship(orders, js, order, {"1": 2})
    await deliver(orders, js, order.name, package)
    requests = [
        create("orders/00000000-0000-0000-0000-000000000000", line("1", 1)),
        create(order.name, line("2", 1)),  # never shipped, so not delivered
        create(order.name, line("1", 3)),
        create(order.name, line("9", 1)),
        create(order.name, line("1", 1, reason=99)),
        create(order.name, line("1", 1, reason=0), line("1", 1)),
        create(order.name, line("1", 1), outcome=R.RETURN_OUTCOME_EXCHANGE),
        create("order-1"),
    ]
    found = [await violations_of(stub.CreateReturn(r)) for r in requests]
    assert found == [
        ["order"], ["lines[0].line_id"], ["lines[0].quantity"], ["lines[0].line_id"],
        ["lines[0].reason"], ["lines[0].reason", "lines[1].line_id"], ["outcome"],
        ["order", "lines"]]
    assert returns_service.runtime is not None
    async with returns_service.runtime.engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).select_from(returns).where(
            returns.c.request_id.in_([r.request_id for r in requests])))
        claimed = await conn.scalar(select(func.count()).select_from(returned_units).where(
            returned_units.c.order_name == order.name))
    assert (stored, claimed) == (0, 0)
    # The same request once it is right passes.
    assert (await stub.CreateReturn(create(order.name, line("1", 2)))).state == (
        R.RETURN_STATE_APPROVED)


async def test_the_demo_policy_set_loads_once_however_often_it_is_loaded(  # type: ignore[no-untyped-def]
        stub: Stub, returns_service: Service) -> None:
    """The demo's policies name SKUs and a channel no other test here uses, so the other
    tests' own channel policies stay the most specific for their lines."""
    target = f"127.0.0.1:{returns_service.bound_port}"
    for _ in range(2):
        await asyncio.to_thread(demo.load_returns, target)
    names = []
    request = R.ListReturnPoliciesRequest(page_size=2)
    while True:
        page = await stub.ListReturnPolicies(request)
        names += [p.name for p in page.return_policies]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    demo_names = {f"returnPolicies/{policy_id}" for policy_id, _ in demo.return_policies()}
    assert demo_names <= set(names) and len(names) == len(set(names))
    assert names == sorted(names)
    stickers = await stub.GetReturnPolicy(R.GetReturnPolicyRequest(
        name="returnPolicies/stickers-final-sale"))
    assert stickers.non_returnable and stickers.sku == "STICKER-PACK"
