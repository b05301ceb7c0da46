"""Stock movements, listings, the drift check, available-to-sell and replenishment over real
gRPC, PostgreSQL and NATS."""

# The fixtures come from inventory_support; tests take them as arguments of the same name.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import ROUND_CEILING, Decimal

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from inventory_support import (  # noqa: F401 (fixtures)
    Events,
    Stub,
    adjust,
    database_url,
    events,
    fields,
    js,
    level,
    level_name,
    receive,
    refused,
    service,
    stub,
    sync_engine,
)
from nats.js import JetStreamContext
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms_devtools.testkit import add_node, add_sku, address, new_id, publish
from oms_inventory.settings import InventorySettings
from oms_inventory.tables import stock_ledger, stock_levels
from oms_platform.pagination import encode_page_token
from sqlalchemy import delete, func, select, update

LOS_ANGELES = (34.0522, -118.2437)
MAX_DRIFTS = 3


@pytest.fixture(scope="module")
def inventory_settings() -> InventorySettings:
    # Velocities are cached per level for an hour by default; here every movement re-reads.
    return InventorySettings(backorder_sweep_interval_seconds=0.5, velocity_refresh_seconds=0,
                             max_drifts_per_check=MAX_DRIFTS)


async def place_order(js: JetStreamContext, events: Events,
                      lines: list[tuple[str, int]]) -> str:
    """Publishes an order as the orders service would and waits until it is allocated."""
    event = order_events.OrderCreated(
        order=f"orders/{uuid.uuid4().hex}", channel="web", external_order_id=uuid.uuid4().hex,
        shipping_address=address(LOS_ANGELES),
        lines=[orders_pb2.OrderLine(line_id=str(i), sku=sku, quantity=quantity)
               for i, (sku, quantity) in enumerate(lines, start=1)])
    await publish(js, event)
    await events.wait_for(events_pb2.StockAllocated, event.order)
    return event.order


async def movements(stub: Stub, parent: str, page_size: int = 0) -> list[
        inventory_pb2.StockMovement]:
    request = inventory_pb2.ListStockMovementsRequest(parent=parent, page_size=page_size)
    found: list[inventory_pb2.StockMovement] = []
    while True:
        response = await stub.ListStockMovements(request)
        found += response.stock_movements
        if not response.next_page_token:
            return found
        request.page_token = response.next_page_token


async def test_a_receipt_adds_units_records_the_ledger_and_is_idempotent(stub: Stub,
                                                                         events: Events) -> None:
    node_id = await add_node(stub)
    mug, tea = await add_sku(stub), await add_sku(stub)
    request_id = uuid.uuid4().hex
    first = await receive(stub, node_id, [(tea, 4), (mug, 10), (tea, 2)], "ASN-77", request_id)
    assert [(s.sku, s.on_hand, s.reserved, s.available) for s in first.stock_levels] == sorted(
        [(mug, 10, 0, 10), (tea, 6, 0, 6)])
    assert await receive(stub, node_id, [(tea, 4), (mug, 10), (tea, 2)], "ASN-77",
                         request_id) == first
    assert (await level(stub, node_id, tea)).on_hand == 6

    ledger = await movements(stub, f"fulfilmentNodes/{node_id}")
    assert [(m.sku, m.kind, m.on_hand_delta, m.reference) for m in ledger] == [
        (tea, inventory_pb2.STOCK_MOVEMENT_KIND_RECEIPT, 2, "ASN-77"),
        (mug, inventory_pb2.STOCK_MOVEMENT_KIND_RECEIPT, 10, "ASN-77"),
        (tea, inventory_pb2.STOCK_MOVEMENT_KIND_RECEIPT, 4, "ASN-77"),
    ]
    assert ledger[0].name.startswith(level_name(node_id, tea) + "/stockMovements/")

    await events.wait_for(events_pb2.StockLevelChanged, level_name(node_id, tea))
    await events.caught_up()
    changed = events.of(events_pb2.StockLevelChanged, level_name(node_id, tea))
    assert [(e.on_hand, e.available, e.network_available)  # type: ignore[attr-defined]
            for e in changed] == [(6, 6, 6)]

    code, violations, _ = await refused(receive(stub, node_id, [(tea, 1)], "PO-other",
                                                request_id))
    assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT, ["request_id"])


async def test_an_invalid_receipt_changes_nothing(stub: Stub, sync_engine) -> None:  # type: ignore[no-untyped-def]
    node_id, sku = await add_node(stub), await add_sku(stub)
    code, violations, _ = await refused(receive(stub, node_id, [(sku, 0), (sku, -3), ("", 1)],
                                                reference=""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(violations) == ["reference", "lines[0].quantity", "lines[1].quantity",
                                  "lines[2].sku"]
    code, violations, _ = await refused(receive(stub, node_id, []))
    assert fields(violations) == ["lines"]
    code, violations, _ = await refused(stub.ReceiveStock(inventory_pb2.ReceiveStockRequest(
        parent="fulfilmentNodes/-", reference="PO-1",
        lines=[inventory_pb2.ReceiptLine(sku=sku, quantity=1)])))
    assert fields(violations) == ["parent"]

    unknown = new_id("SKU")
    code, _, message = await refused(receive(stub, node_id, [(sku, 5), (unknown, 1)]))
    assert code == grpc.StatusCode.NOT_FOUND and unknown in message
    unknown_node = new_id("node")
    code, _, message = await refused(receive(stub, unknown_node, [(sku, 5)]))
    assert code == grpc.StatusCode.NOT_FOUND and unknown_node in message

    assert (await level(stub, node_id, sku)).on_hand == 0
    with sync_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(stock_ledger)
                           .where(stock_ledger.c.sku == sku)) == 0


async def test_concurrent_retries_of_a_receipt_or_a_count_apply_once(stub: Stub) -> None:
    node_id, sku = await add_node(stub), await add_sku(stub)
    receipts = await asyncio.gather(*(receive(stub, node_id, [(sku, 5)], "PO-9", "rcv-1")
                                      for _ in range(6)))
    assert all(r == receipts[0] for r in receipts)
    counts = await asyncio.gather(*(stub.CountStock(inventory_pb2.CountStockRequest(
        name=level_name(node_id, sku), counted_on_hand=3, request_id="cnt-1"))
        for _ in range(6)))
    assert {c.on_hand for c in counts} == {3}
    ledger = await movements(stub, level_name(node_id, sku))
    assert [(m.kind, m.on_hand_delta) for m in ledger] == [
        (inventory_pb2.STOCK_MOVEMENT_KIND_CYCLE_COUNT, -2),
        (inventory_pb2.STOCK_MOVEMENT_KIND_RECEIPT, 5)]


async def test_a_cycle_count_sets_on_hand_and_never_below_reserved(
    stub: Stub, js: JetStreamContext, events: Events,
) -> None:
    node_id, sku = await add_node(stub), await add_sku(stub)
    await receive(stub, node_id, [(sku, 10)])
    await place_order(js, events, [(sku, 4)])
    name = level_name(node_id, sku)

    counted = await stub.CountStock(inventory_pb2.CountStockRequest(
        name=name, counted_on_hand=7, note="aisle 4 recount", request_id="count-1"))
    assert (counted.on_hand, counted.reserved, counted.available) == (7, 4, 3)
    # A retry of the same count changes nothing, even after stock moved since.
    await adjust(stub, node_id, sku, 1)
    again = await stub.CountStock(inventory_pb2.CountStockRequest(
        name=name, counted_on_hand=7, request_id="count-1"))
    assert again.on_hand == 8

    code, _, _ = await refused(stub.CountStock(inventory_pb2.CountStockRequest(
        name=name, counted_on_hand=3)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, violations, _ = await refused(stub.CountStock(inventory_pb2.CountStockRequest(
        name=name, counted_on_hand=-1)))
    assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT, ["counted_on_hand"])
    assert (await level(stub, node_id, sku)).on_hand == 8

    exact = await stub.CountStock(inventory_pb2.CountStockRequest(name=name,
                                                                  counted_on_hand=8))
    assert exact.on_hand == 8
    ledger = await movements(stub, name)
    assert [(m.kind, m.on_hand_delta, m.reserved_delta, m.reference) for m in ledger] == [
        (inventory_pb2.STOCK_MOVEMENT_KIND_CYCLE_COUNT, 0, 0, ""),
        (inventory_pb2.STOCK_MOVEMENT_KIND_CORRECTION, 1, 0, ""),
        (inventory_pb2.STOCK_MOVEMENT_KIND_CYCLE_COUNT, -3, 0, "aisle 4 recount"),
        (inventory_pb2.STOCK_MOVEMENT_KIND_RESERVATION, 0, 4, ledger[3].reference),
        (inventory_pb2.STOCK_MOVEMENT_KIND_RECEIPT, 10, 0, "PO-1"),
    ]
    assert ledger[3].reference.startswith("orders/")


async def test_safety_stock_and_channel_buffers_shape_what_channels_may_sell(
    stub: Stub, events: Events,
) -> None:
    west, east = await add_node(stub), await add_node(stub)
    sku = await add_sku(stub)
    channel_all = new_id("ebay")
    await stub.SetChannelBuffer(inventory_pb2.SetChannelBufferRequest(
        channel_buffer=inventory_pb2.ChannelBuffer(channel="amazon-de", sku=sku, buffer=3)))
    await stub.SetChannelBuffer(inventory_pb2.SetChannelBufferRequest(
        channel_buffer=inventory_pb2.ChannelBuffer(channel=channel_all, sku="*", buffer=1)))
    await receive(stub, west, [(sku, 10)])
    await receive(stub, east, [(sku, 4)])

    updated = await stub.UpdateStockLevel(inventory_pb2.UpdateStockLevelRequest(
        stock_level=inventory_pb2.StockLevel(name=level_name(west, sku), safety_stock=2),
        update_mask=FieldMask(paths=["safety_stock"])))
    assert (updated.on_hand, updated.safety_stock, updated.available) == (10, 2, 8)

    ats = await stub.GetAvailableToSell(inventory_pb2.GetAvailableToSellRequest(
        product=f"products/{sku}"))
    assert ats.network_available == 12
    channels = {c.channel: (c.buffer, c.available_to_sell) for c in ats.channels}
    assert channels["amazon-de"] == (3, 9)
    assert channels[channel_all] == (1, 11)
    assert [(s.node_id, s.available) for s in ats.stock_levels] == sorted(
        [(west, 8), (east, 4)])

    latest = await events.settle(events_pb2.StockLevelChanged, level_name(west, sku),
                                 lambda e: e.safety_stock == 2)  # type: ignore[attr-defined]
    assert (latest.available, latest.network_available) == (8, 12)  # type: ignore[attr-defined]
    assert {c.channel: c.available_to_sell  # type: ignore[attr-defined]
            for c in latest.channels}[channel_all] == 11  # type: ignore[attr-defined]

    # Dropping a SKU's buffer announces every level of the SKU again.
    await stub.DeleteChannelBuffer(inventory_pb2.DeleteChannelBufferRequest(
        name=f"channels/amazon-de/buffers/{sku}"))
    after = await events.settle(
        events_pb2.StockLevelChanged, level_name(east, sku),
        lambda e: "amazon-de" not in {c.channel for c in e.channels})  # type: ignore[attr-defined]
    assert after.network_available == 12  # type: ignore[attr-defined]
    listed = await stub.ListChannelBuffers(inventory_pb2.ListChannelBuffersRequest(
        parent=f"channels/{channel_all}"))
    assert [(b.name, b.buffer) for b in listed.channel_buffers] == [
        (f"channels/{channel_all}/buffers/*", 1)]
    code, _, _ = await refused(stub.DeleteChannelBuffer(inventory_pb2.DeleteChannelBufferRequest(
        name=f"channels/amazon-de/buffers/{sku}")))
    assert code == grpc.StatusCode.NOT_FOUND

    code, violations, _ = await refused(stub.UpdateStockLevel(
        inventory_pb2.UpdateStockLevelRequest(
            stock_level=inventory_pb2.StockLevel(name=level_name(west, sku), safety_stock=-1,
                                                 on_hand=99),
            update_mask=FieldMask(paths=["on_hand"]))))
    assert fields(violations) == ["stock_level.safety_stock", "update_mask"]
    code, violations, _ = await refused(stub.SetChannelBuffer(
        inventory_pb2.SetChannelBufferRequest(channel_buffer=inventory_pb2.ChannelBuffer(
            channel="Bad Channel", sku=sku, buffer=-2))))
    assert fields(violations) == ["channel_buffer.channel", "channel_buffer.buffer"]
    assert (await level(stub, west, sku)).safety_stock == 2


async def test_list_levels_of_a_node_or_of_every_node(stub: Stub) -> None:
    nodes = sorted([await add_node(stub), await add_node(stub)])
    prefix = new_id("LVL")
    skus = [f"{prefix}-{i}" for i in range(3)]
    for sku in skus:
        await stub.CreateProduct(inventory_pb2.CreateProductRequest(
            product=inventory_pb2.Product(sku=sku)))
    await receive(stub, nodes[0], [(sku, 1) for sku in skus])
    await receive(stub, nodes[1], [(skus[1], 2)])

    async def listed(parent: str, expression: str) -> list[tuple[str, str, int]]:
        request = inventory_pb2.ListStockLevelsRequest(parent=parent, filter=expression,
                                                       page_size=2)
        found = []
        while True:
            response = await stub.ListStockLevels(request)
            found += [(s.node_id, s.sku, s.on_hand) for s in response.stock_levels]
            if not response.next_page_token:
                return found
            request.page_token = response.next_page_token

    assert await listed("fulfilmentNodes/-", f'sku = "{prefix}-*"') == [
        (nodes[0], skus[0], 1), (nodes[0], skus[1], 1), (nodes[0], skus[2], 1),
        (nodes[1], skus[1], 2)]
    assert await listed(f"fulfilmentNodes/{nodes[1]}", "") == [(nodes[1], skus[1], 2)]
    assert await listed("fulfilmentNodes/-", f'sku = "{skus[1]}"') == [
        (nodes[0], skus[1], 1), (nodes[1], skus[1], 2)]
    # Every condition of the conjunction counts, not only the first.
    assert await listed("fulfilmentNodes/-", f'sku = "{prefix}-*" AND sku = "{skus[2]}"') == [
        (nodes[0], skus[2], 1)]
    assert await listed("fulfilmentNodes/-", f'sku = "{prefix}-*" AND sku = "{new_id("X")}"') == []
    code, _, _ = await refused(stub.ListStockLevels(inventory_pb2.ListStockLevelsRequest(
        parent=f"fulfilmentNodes/{new_id('node')}")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, violations, _ = await refused(stub.ListStockLevels(
        inventory_pb2.ListStockLevelsRequest(parent="nodes/x", filter="title = x")))
    assert fields(violations) == ["parent"]


async def test_movements_are_listed_newest_first_page_by_page(stub: Stub) -> None:
    node_id, sku = await add_node(stub), await add_sku(stub)
    for quantity in range(1, 8):
        await receive(stub, node_id, [(sku, quantity)], reference=f"PO-{quantity}")
    listed = await movements(stub, level_name(node_id, sku), page_size=3)
    assert [m.reference for m in listed] == [f"PO-{q}" for q in range(7, 0, -1)]
    code, violations, _ = await refused(stub.ListStockMovements(
        inventory_pb2.ListStockMovementsRequest(parent="fulfilmentNodes/-")))
    assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT, ["parent"])


async def test_reorder_point_is_announced_once_per_crossing(stub: Stub,
                                                            events: Events) -> None:
    node_id = await add_node(stub)
    sku = await add_sku(stub, reorder_point=10, supplier_lead_time_days=7)
    name = level_name(node_id, sku)
    await receive(stub, node_id, [(sku, 15)])
    await adjust(stub, node_id, sku, -5)  # 10 available: at the point
    await adjust(stub, node_id, sku, -1)  # still below: no second alert
    await events.caught_up()
    (reached,) = events.of(events_pb2.ReorderPointReached, name)
    assert (reached.available, reached.reorder_point, reached.lead_time_days,  # type: ignore[attr-defined]
            reached.suggested_quantity, reached.daily_velocity) == (10, 10, 7, 1, "0")  # type: ignore[attr-defined]

    suggestions = await stub.ListReplenishmentSuggestions(
        inventory_pb2.ListReplenishmentSuggestionsRequest(parent=f"fulfilmentNodes/{node_id}"))
    assert [(s.sku, s.available, s.reorder_point, s.suggested_quantity)
            for s in suggestions.suggestions] == [(sku, 9, 10, 2)]

    await receive(stub, node_id, [(sku, 20)])  # 29: above again, re-armed
    assert not (await stub.ListReplenishmentSuggestions(
        inventory_pb2.ListReplenishmentSuggestionsRequest(
            parent=f"fulfilmentNodes/{node_id}"))).suggestions
    await adjust(stub, node_id, sku, -20)
    await events.caught_up()
    alerts = events.of(events_pb2.ReorderPointReached, name)
    assert [a.available for a in alerts] == [10, 9]  # type: ignore[attr-defined]


async def test_reorder_point_from_sales_velocity(
    stub: Stub, js: JetStreamContext, events: Events,
) -> None:
    node_id = await add_node(stub, LOS_ANGELES)
    sku = await add_sku(stub, supplier_lead_time_days=10)
    name = level_name(node_id, sku)
    await receive(stub, node_id, [(sku, 100)])
    await stub.UpdateStockLevel(inventory_pb2.UpdateStockLevelRequest(
        stock_level=inventory_pb2.StockLevel(name=name, safety_stock=5),
        update_mask=FieldMask(paths=["safety_stock"])))
    await place_order(js, events, [(sku, 56)])  # 2 a day over 28 days: point 2*10+5 = 25
    await events.caught_up()
    assert not events.of(events_pb2.ReorderPointReached, name)  # 39 available
    await place_order(js, events, [(sku, 20)])  # 76 in 28 days; 19 available

    await events.caught_up()
    (reached,) = events.of(events_pb2.ReorderPointReached, name)
    velocity = (Decimal(76) / 28).quantize(Decimal("0.0001"))
    point = int((velocity * 10).to_integral_value(ROUND_CEILING)) + 5
    order_up_to = point + int((velocity * 14).to_integral_value(ROUND_CEILING))
    assert (reached.daily_velocity, reached.available, reached.reorder_point,  # type: ignore[attr-defined]
            reached.suggested_quantity) == (str(velocity), 19, point, order_up_to - 19)  # type: ignore[attr-defined]
    (suggestion,) = (await stub.ListReplenishmentSuggestions(
        inventory_pb2.ListReplenishmentSuggestionsRequest(
            parent=f"fulfilmentNodes/{node_id}"))).suggestions
    assert (suggestion.reorder_point, suggestion.suggested_quantity) == (point, order_up_to - 19)


async def test_drift_is_reported_repaired_and_then_clean(stub: Stub, sync_engine) -> None:  # type: ignore[no-untyped-def]
    # Every level the tests above moved adds up to its ledger.
    clean = await stub.CheckStockDrift(inventory_pb2.CheckStockDriftRequest())
    assert clean.levels_checked > 10
    assert list(clean.drifts) == []

    node_id = await add_node(stub)
    sku, lost = sorted([await add_sku(stub), await add_sku(stub)])
    await receive(stub, node_id, [(sku, 9), (lost, 4)])
    await adjust(stub, node_id, sku, -2)
    with sync_engine.begin() as conn:  # behind the service's back
        conn.execute(update(stock_levels).where(stock_levels.c.node_id == node_id,
                                                stock_levels.c.sku == sku).values(on_hand=11))
        conn.execute(delete(stock_levels).where(stock_levels.c.node_id == node_id,
                                                stock_levels.c.sku == lost))

    reported = await stub.CheckStockDrift(inventory_pb2.CheckStockDriftRequest())
    assert [(d.node_id, d.sku, d.recorded_on_hand, d.ledger_on_hand, d.recorded_reserved,
             d.ledger_reserved, d.repaired) for d in reported.drifts] == [
        (node_id, sku, 11, 7, 0, 0, False), (node_id, lost, 0, 4, 0, 0, False)]
    assert reported.levels_checked == clean.levels_checked + 2
    assert (await level(stub, node_id, sku)).on_hand == 11

    repaired = await stub.CheckStockDrift(inventory_pb2.CheckStockDriftRequest(repair=True))
    assert [(d.sku, d.repaired) for d in repaired.drifts] == [(sku, True), (lost, True)]
    assert (await level(stub, node_id, sku)).on_hand == 7
    assert (await level(stub, node_id, lost)).on_hand == 4
    (audit, *_) = await movements(stub, level_name(node_id, sku))
    assert (audit.kind, audit.on_hand_delta, audit.reserved_delta) == (
        inventory_pb2.STOCK_MOVEMENT_KIND_DRIFT_REPAIR, 0, 0)
    assert json.loads(audit.reference) == {"recorded": {"on_hand": 11, "reserved": 0},
                                           "ledger": {"on_hand": 7, "reserved": 0}}
    assert list((await stub.CheckStockDrift(inventory_pb2.CheckStockDriftRequest())).drifts) == []


async def test_a_drift_check_reports_and_repairs_a_bounded_number_at_a_time(
    stub: Stub, sync_engine,  # type: ignore[no-untyped-def]
) -> None:
    node_id = await add_node(stub)
    skus = sorted([await add_sku(stub) for _ in range(MAX_DRIFTS + 2)])
    await receive(stub, node_id, [(sku, 4) for sku in skus])
    with sync_engine.begin() as conn:  # behind the service's back
        conn.execute(update(stock_levels).where(stock_levels.c.node_id == node_id)
                     .values(on_hand=9))

    async def check(repair: bool) -> tuple[list[tuple[str, bool]], int, int]:
        call = stub.CheckStockDrift(inventory_pb2.CheckStockDriftRequest(repair=repair))
        response = await call
        total = dict(await call.trailing_metadata())["drifts-total"]  # type: ignore[arg-type]
        return ([(d.sku, d.repaired) for d in response.drifts], int(total),
                response.levels_checked)

    found, total, checked = await check(repair=False)
    assert (found, total) == ([(sku, False) for sku in skus[:MAX_DRIFTS]], len(skus))
    # The first ones by node and SKU are repaired; the next call finds the rest.
    assert (await check(repair=True))[:2] == ([(sku, True) for sku in skus[:MAX_DRIFTS]],
                                              len(skus))
    assert (await check(repair=True))[:2] == ([(sku, True) for sku in skus[MAX_DRIFTS:]], 2)
    assert await check(repair=False) == ([], 0, checked)
    assert [(await level(stub, node_id, sku)).on_hand for sku in skus] == [4] * len(skus)


async def test_a_page_token_with_a_key_of_the_wrong_shape_is_refused(stub: Stub) -> None:
    """A token carries the key of the last row; one built (or forged) with the list's own
    parameters but a key of another shape is INVALID_ARGUMENT, never UNKNOWN."""
    node_id, sku = await add_node(stub), await add_sku(stub)
    node = f"fulfilmentNodes/{node_id}"
    lists = [  # (method, request, the parameters its tokens are bound to, wrong keys)
        ("ListProducts", inventory_pb2.ListProductsRequest(),
         {"filter": "", "show_deleted": False}, [[], [5], ["a", "b"], [None], ["\u0000"]]),
        ("ListFulfilmentNodes", inventory_pb2.ListFulfilmentNodesRequest(), {"filter": ""},
         [[], [[1]], ["\ud800"]]),
        ("ListStockLevels", inventory_pb2.ListStockLevelsRequest(parent="fulfilmentNodes/-"),
         {"parent": "fulfilmentNodes/-", "filter": ""}, [["only-one"], [1, 2], ["a", "b", "c"]]),
        ("ListStockMovements", inventory_pb2.ListStockMovementsRequest(parent=node),
         {"parent": node}, [["x"], [2**70], [True], [1.5], [1, 2]]),
        ("ListChannelBuffers", inventory_pb2.ListChannelBuffersRequest(parent="channels/-"),
         {"parent": "channels/-"}, [["web"], [{"a": 1}, "b"]]),
        ("ListReplenishmentSuggestions",
         inventory_pb2.ListReplenishmentSuggestionsRequest(parent=node), {"parent": node},
         [[node_id], [1, 2]]),
        ("ListBackorders", inventory_pb2.ListBackordersRequest(parent=f"products/{sku}"),
         {"parent": f"products/{sku}"},
         [[True, "2026-01-01T00:00:00+00:00"], [True, "yesterday", 1],
          [True, "2026-01-01T00:00:00+00:00", 2**70], ["yes", "2026-01-01T00:00:00+00:00", 1]]),
    ]
    for method, request, query, keys in lists:
        for key in keys:
            request.page_token = encode_page_token(key, query)  # type: ignore[attr-defined]
            code, violations, _ = await refused(getattr(stub, method)(request))
            assert (code, fields(violations)) == (
                grpc.StatusCode.INVALID_ARGUMENT, ["page_token"]), (method, key)


async def test_settings_are_read_once_at_start(
    stub: Stub, js: JetStreamContext, events: Events, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A running service keeps the settings it started with: changing the environment
    afterwards changes nothing until it is restarted."""
    node_id = await add_node(stub, LOS_ANGELES)
    sku = await add_sku(stub, reorder_point=1000, supplier_lead_time_days=1)
    await receive(stub, node_id, [(sku, 100)])
    await place_order(js, events, [(sku, 28)])  # 1 a day over the 28-day window

    async def suggestion() -> tuple[str, int]:
        (found,) = (await stub.ListReplenishmentSuggestions(
            inventory_pb2.ListReplenishmentSuggestionsRequest(
                parent=f"fulfilmentNodes/{node_id}"))).suggestions
        return found.daily_velocity, found.suggested_quantity

    # Up to the point plus 14 days of sales, less the 72 available.
    assert await suggestion() == ("1", 1000 + 14 - 72)
    monkeypatch.setenv("OMS_INVENTORY_VELOCITY_WINDOW_DAYS", "1")
    monkeypatch.setenv("OMS_INVENTORY_REVIEW_PERIOD_DAYS", "0")
    assert await suggestion() == ("1", 1000 + 14 - 72)


async def test_an_adjustment_with_a_reason_the_contract_does_not_know_is_refused(
    stub: Stub, sync_engine,  # type: ignore[no-untyped-def]
) -> None:
    """An enum number no AdjustmentReason has (proto3 keeps it) is a field violation, not an
    error of the service, and records nothing."""
    node_id, sku = await add_node(stub), await add_sku(stub)
    code, violations, _ = await refused(stub.AdjustStock(inventory_pb2.AdjustStockRequest(
        node_id=node_id, sku=sku, delta=5, reason=99)))  # type: ignore[arg-type]
    assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT, ["reason"])
    with sync_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(stock_ledger)
                           .where(stock_ledger.c.sku == sku)) == 0


async def test_list_backorders_caps_its_page_size_as_every_list_does(stub: Stub) -> None:
    sku = await add_sku(stub)
    listed = await stub.ListBackorders(inventory_pb2.ListBackordersRequest(
        parent=f"products/{sku}", page_size=5000))
    assert list(listed.backorders) == [] and listed.next_page_token == ""
