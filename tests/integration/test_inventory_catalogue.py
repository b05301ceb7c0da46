"""The product master and the fulfilment nodes over real gRPC, PostgreSQL and NATS."""

# The fixtures come from inventory_support; tests take them as arguments of the same name.
# ruff: noqa: F811

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.type import timeofday_pb2
from inventory_support import (  # noqa: F401 (fixtures)
    Events,
    Stub,
    database_url,
    events,
    fields,
    inventory_settings,
    js,
    refused,
    service,
    stub,
)
from oms.common.v1 import common_pb2
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms_devtools.testkit import RENO, add_node, add_sku, address, new_id


def full_product(sku: str) -> inventory_pb2.Product:
    return inventory_pb2.Product(
        sku=sku, title="Blue glass vase", gtin="4006381333931",
        weight=common_pb2.Weight(grams=1200),
        dimensions=common_pb2.Dimensions(length_mm=200, width_mm=150, height_mm=300),
        fragile=True, hazardous=False, minimum_order_quantity=2, returnable=True,
        backorder_policy=inventory_pb2.BACKORDER_POLICY_ALLOW_UP_TO_LIMIT, backorder_limit=40,
        reorder_point=12, supplier_lead_time_days=9)


async def list_all(stub: Stub, request: inventory_pb2.ListProductsRequest) -> list[str]:
    """Every SKU the listing returns, page by page."""
    skus: list[str] = []
    while True:
        response = await stub.ListProducts(request)
        assert len(response.products) <= (request.page_size or 50)
        skus += [p.sku for p in response.products]
        if not response.next_page_token:
            return skus
        request.page_token = response.next_page_token


async def test_a_product_keeps_every_field_and_is_announced(stub: Stub, events: Events) -> None:
    sku = new_id("VASE")
    created = await stub.CreateProduct(inventory_pb2.CreateProductRequest(
        product=full_product(sku)))
    expected = full_product(sku)
    expected.name = f"products/{sku}"
    expected.create_time.CopyFrom(created.create_time)
    expected.update_time.CopyFrom(created.update_time)
    assert created == expected
    assert await stub.GetProduct(inventory_pb2.GetProductRequest(name=created.name)) == created

    await events.caught_up()
    (changed,) = events.of(events_pb2.ProductChanged, created.name)
    assert changed.product == created  # type: ignore[attr-defined]
    assert not changed.deleted  # type: ignore[attr-defined]


async def test_invalid_product_fields_are_all_reported(stub: Stub) -> None:
    code, violations, _ = await refused(stub.CreateProduct(inventory_pb2.CreateProductRequest(
        product=inventory_pb2.Product(
            sku=new_id("SKU"), minimum_order_quantity=-1, reorder_point=-5,
            supplier_lead_time_days=-2, backorder_policy=inventory_pb2.BACKORDER_POLICY_DENY,
            backorder_limit=3))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(violations) == ["product.minimum_order_quantity", "product.reorder_point",
                                  "product.supplier_lead_time_days", "product.backorder_limit"]


async def test_update_changes_only_the_masked_fields(stub: Stub, events: Events) -> None:
    sku = new_id("SKU")
    created = await stub.CreateProduct(inventory_pb2.CreateProductRequest(
        product=full_product(sku)))
    updated = await stub.UpdateProduct(inventory_pb2.UpdateProductRequest(
        product=inventory_pb2.Product(name=created.name, title="Green vase",
                                      minimum_order_quantity=6, fragile=False),
        update_mask=FieldMask(paths=["title", "minimum_order_quantity"])))
    assert (updated.title, updated.minimum_order_quantity) == ("Green vase", 6)
    assert updated.fragile and updated.gtin == created.gtin  # not in the mask: kept
    assert updated.update_time.ToDatetime() >= created.update_time.ToDatetime()
    assert await stub.GetProduct(inventory_pb2.GetProductRequest(name=created.name)) == updated
    changes = await events.wait_for(events_pb2.ProductChanged, created.name, count=2)
    assert changes[-1].product.minimum_order_quantity == 6  # type: ignore[attr-defined]
    # The limit alone: the stored policy (not the message's unset one) is what it goes with.
    limited = await stub.UpdateProduct(inventory_pb2.UpdateProductRequest(
        product=inventory_pb2.Product(sku=sku, backorder_limit=60),
        update_mask=FieldMask(paths=["backorder_limit"])))
    assert (limited.backorder_policy, limited.backorder_limit) == (
        inventory_pb2.BACKORDER_POLICY_ALLOW_UP_TO_LIMIT, 60)

    code, violations, _ = await refused(stub.UpdateProduct(inventory_pb2.UpdateProductRequest(
        product=inventory_pb2.Product(name=created.name, gtin="123"),
        update_mask=FieldMask(paths=["gtin", "sku", "create_time"]))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(violations) == ["update_mask", "update_mask", "product.gtin"]
    code, _, _ = await refused(stub.UpdateProduct(inventory_pb2.UpdateProductRequest(
        product=inventory_pb2.Product(sku=new_id("SKU"), title="x"),
        update_mask=FieldMask(paths=["title"]))))
    assert code == grpc.StatusCode.NOT_FOUND
    assert (await stub.GetProduct(inventory_pb2.GetProductRequest(
        name=created.name))).title == "Green vase"


async def test_a_deleted_product_is_hidden_from_lists_and_announced(stub: Stub,
                                                                   events: Events) -> None:
    prefix = new_id("DEL")
    keep, gone = f"{prefix}-a", f"{prefix}-b"
    for sku in (keep, gone):
        await stub.CreateProduct(inventory_pb2.CreateProductRequest(
            product=inventory_pb2.Product(sku=sku, title=sku)))
    deleted = await stub.DeleteProduct(inventory_pb2.DeleteProductRequest(
        name=f"products/{gone}"))
    assert deleted.sku == gone
    # A retried delete answers the same and announces nothing new.
    await stub.DeleteProduct(inventory_pb2.DeleteProductRequest(name=f"products/{gone}"))

    listed = await list_all(stub, inventory_pb2.ListProductsRequest(filter=f'sku = "{prefix}*"'))
    assert listed == [keep]
    with_deleted = await list_all(stub, inventory_pb2.ListProductsRequest(
        filter=f'sku = "{prefix}*"', show_deleted=True))
    assert with_deleted == [keep, gone]

    await events.caught_up()
    announced = events.of(events_pb2.ProductChanged, f"products/{gone}")
    assert [e.deleted for e in announced] == [False, True]  # type: ignore[attr-defined]
    code, _, _ = await refused(stub.UpdateProduct(inventory_pb2.UpdateProductRequest(
        product=inventory_pb2.Product(sku=gone, title="back?"),
        update_mask=FieldMask(paths=["title"]))))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _, _ = await refused(stub.DeleteProduct(inventory_pb2.DeleteProductRequest(
        name=f"products/{new_id('SKU')}")))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_list_filters_and_pages(stub: Stub) -> None:
    prefix = new_id("LST")
    catalogue = [
        inventory_pb2.Product(sku=f"{prefix}-{i:02d}", title=f"{colour} mug {i}",
                              fragile=i % 2 == 0, gtin="4006381333931" if i == 3 else "",
                              backorder_policy=inventory_pb2.BACKORDER_POLICY_ALLOW
                              if i < 3 else inventory_pb2.BACKORDER_POLICY_DENY)
        for i, colour in enumerate(["red", "blue", "Blue", "green", "blue", "red", "blue"])
    ]
    await stub.BatchUpsertProducts(inventory_pb2.BatchUpsertProductsRequest(
        products=catalogue))
    everything = await list_all(stub, inventory_pb2.ListProductsRequest(
        filter=f'sku = "{prefix}-*"', page_size=3))
    assert everything == [p.sku for p in catalogue]

    async def matching(expression: str) -> list[int]:
        skus = await list_all(stub, inventory_pb2.ListProductsRequest(
            filter=f'sku = "{prefix}-*" AND {expression}', page_size=2))
        return [int(sku.rsplit("-", 1)[1]) for sku in skus]

    assert await matching('title : "blue"') == [1, 2, 4, 6]
    assert await matching("fragile = true") == [0, 2, 4, 6]
    assert await matching('fragile = false AND title : "BLUE"') == [1]
    assert await matching("backorder_policy = ALLOW") == [0, 1, 2]
    assert await matching('gtin = "4006381333931"') == [3]
    assert await matching(f'sku != "{prefix}-00" AND backorder_policy != DENY') == [1, 2]

    code, violations, _ = await refused(stub.ListProducts(inventory_pb2.ListProductsRequest(
        filter="colour = red")))
    assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT, ["filter"])
    first = await stub.ListProducts(inventory_pb2.ListProductsRequest(
        filter=f'sku = "{prefix}-*"', page_size=2))
    code, violations, _ = await refused(stub.ListProducts(inventory_pb2.ListProductsRequest(
        filter="fragile = true", page_size=2, page_token=first.next_page_token)))
    assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])


async def test_batch_upsert_validates_everything_first_and_announces_only_changes(
    stub: Stub, events: Events,
) -> None:
    prefix = new_id("BAT")
    skus = [f"{prefix}-{i}" for i in range(4)]
    first = await stub.BatchUpsertProducts(inventory_pb2.BatchUpsertProductsRequest(
        products=[inventory_pb2.Product(sku=sku, title="v1", minimum_order_quantity=1)
                  for sku in skus[:3]]))
    assert [p.title for p in first.products] == ["v1"] * 3
    await stub.DeleteProduct(inventory_pb2.DeleteProductRequest(name=f"products/{skus[2]}"))

    second = await stub.BatchUpsertProducts(inventory_pb2.BatchUpsertProductsRequest(
        products=[
            inventory_pb2.Product(sku=skus[0], title="v1", minimum_order_quantity=1),  # same
            inventory_pb2.Product(sku=skus[1], title="v2", minimum_order_quantity=3),
            inventory_pb2.Product(sku=skus[2], title="v1", minimum_order_quantity=1),  # undelete
            inventory_pb2.Product(sku=skus[3], title="new"),
        ]))
    assert [(p.sku, p.title, p.minimum_order_quantity) for p in second.products] == [
        (skus[0], "v1", 1), (skus[1], "v2", 3), (skus[2], "v1", 1), (skus[3], "new", 1)]
    assert second.products[0] == first.products[0]  # unchanged: not even its update time
    listed = await list_all(stub, inventory_pb2.ListProductsRequest(filter=f'sku = "{prefix}*"'))
    assert listed == skus

    await events.caught_up()
    assert [len(events.of(events_pb2.ProductChanged, f"products/{sku}")) for sku in skus] == [
        1, 2, 3, 1]

    bad = [inventory_pb2.Product(sku=f"{prefix}-x{i}", title="x") for i in range(5)]
    bad[3].gtin = "12345"
    bad[4].sku = bad[1].sku
    bad[2].weight.grams = -1
    code, violations, _ = await refused(stub.BatchUpsertProducts(
        inventory_pb2.BatchUpsertProductsRequest(products=bad)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(violations) == ["products[2].weight.grams", "products[3].gtin",
                                  "products[4].sku"]
    assert await list_all(stub, inventory_pb2.ListProductsRequest(
        filter=f'sku = "{prefix}-x*"', show_deleted=True)) == []
    code, violations, _ = await refused(stub.BatchUpsertProducts(
        inventory_pb2.BatchUpsertProductsRequest()))
    assert fields(violations) == ["products"]


def full_node(node_id: str) -> inventory_pb2.FulfilmentNode:
    return inventory_pb2.FulfilmentNode(
        node_id=node_id, display_name="Reno DC", type=inventory_pb2.NODE_TYPE_WAREHOUSE,
        address=address(RENO), priority=2, service_regions=["US-CA", "US-NV"],
        cutoff_time=timeofday_pb2.TimeOfDay(hours=16, minutes=30),
        time_zone="America/Los_Angeles",
        shipment_cost=common_pb2.Money(currency_code="USD", amount="4.95"),
        bins=[inventory_pb2.Bin(bin_code="B-01", zone="ambient", walk_sequence=20),
              inventory_pb2.Bin(bin_code="A-02", zone="ambient", walk_sequence=10),
              inventory_pb2.Bin(bin_code="A-01", zone="cold", walk_sequence=10)])


async def test_a_node_keeps_regions_cut_off_cost_and_bins_in_walking_order(stub: Stub) -> None:
    node_id = new_id("node")
    created = await stub.CreateFulfilmentNode(inventory_pb2.CreateFulfilmentNodeRequest(
        fulfilment_node=full_node(node_id)))
    assert list(created.service_regions) == ["US-CA", "US-NV"]
    assert (created.cutoff_time.hours, created.cutoff_time.minutes) == (16, 30)
    assert created.time_zone == "America/Los_Angeles"
    assert (created.shipment_cost.currency_code, created.shipment_cost.amount) == ("USD",
                                                                                   "4.95")
    assert [b.bin_code for b in created.bins] == ["A-01", "A-02", "B-01"]
    assert await stub.GetFulfilmentNode(inventory_pb2.GetFulfilmentNodeRequest(
        name=created.name)) == created

    plain = await stub.GetFulfilmentNode(inventory_pb2.GetFulfilmentNodeRequest(
        name=f"fulfilmentNodes/{await add_node(stub)}"))
    assert (plain.time_zone, list(plain.service_regions), list(plain.bins)) == ("UTC", [], [])
    assert not plain.HasField("cutoff_time") and not plain.HasField("shipment_cost")


async def test_invalid_node_fields_are_all_reported(stub: Stub) -> None:
    node = full_node(new_id("node"))
    node.service_regions[:] = ["US-CA", "California"]
    node.time_zone = "Pacific/Atlantis"
    node.cutoff_time.hours = 25
    node.shipment_cost.amount = "-4"
    node.bins[1].bin_code = "B-01"
    code, violations, _ = await refused(stub.CreateFulfilmentNode(
        inventory_pb2.CreateFulfilmentNodeRequest(fulfilment_node=node)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(violations) == [
        "fulfilment_node.service_regions[1]", "fulfilment_node.cutoff_time",
        "fulfilment_node.time_zone", "fulfilment_node.shipment_cost.amount",
        "fulfilment_node.bins[1].bin_code",
    ]
    code, _, _ = await refused(stub.GetFulfilmentNode(inventory_pb2.GetFulfilmentNodeRequest(
        name=f"fulfilmentNodes/{node.node_id}")))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_update_node_with_a_mask(stub: Stub) -> None:
    node_id = new_id("node")
    created = await stub.CreateFulfilmentNode(inventory_pb2.CreateFulfilmentNodeRequest(
        fulfilment_node=full_node(node_id)))
    updated = await stub.UpdateFulfilmentNode(inventory_pb2.UpdateFulfilmentNodeRequest(
        fulfilment_node=inventory_pb2.FulfilmentNode(
            name=created.name, priority=7, display_name="ignored",
            cutoff_time=timeofday_pb2.TimeOfDay(hours=18),
            bins=[inventory_pb2.Bin(bin_code="Z-9", zone="bulk", walk_sequence=1)]),
        update_mask=FieldMask(paths=["priority", "cutoff_time", "bins"])))
    assert (updated.priority, updated.display_name) == (7, "Reno DC")
    assert (updated.cutoff_time.hours, updated.cutoff_time.minutes) == (18, 0)
    assert [b.bin_code for b in updated.bins] == ["Z-9"]
    assert list(updated.service_regions) == ["US-CA", "US-NV"]
    assert await stub.GetFulfilmentNode(inventory_pb2.GetFulfilmentNodeRequest(
        name=created.name)) == updated
    # A masked cost that is not given is cleared: unknown again, not zero.
    cleared = await stub.UpdateFulfilmentNode(inventory_pb2.UpdateFulfilmentNodeRequest(
        fulfilment_node=inventory_pb2.FulfilmentNode(name=created.name),
        update_mask=FieldMask(paths=["shipment_cost"])))
    assert created.HasField("shipment_cost") and not cleared.HasField("shipment_cost")

    code, violations, _ = await refused(stub.UpdateFulfilmentNode(
        inventory_pb2.UpdateFulfilmentNodeRequest(
            fulfilment_node=inventory_pb2.FulfilmentNode(name=created.name, priority=-1),
            update_mask=FieldMask(paths=["priority", "node_id"]))))
    assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                          ["update_mask", "fulfilment_node.priority"])
    code, _, _ = await refused(stub.UpdateFulfilmentNode(
        inventory_pb2.UpdateFulfilmentNodeRequest(
            fulfilment_node=inventory_pb2.FulfilmentNode(node_id=new_id("node"), priority=1),
            update_mask=FieldMask(paths=["priority"]))))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_list_nodes_by_type_and_region(stub: Stub) -> None:
    made = {}
    for label, kind, regions in [
        ("ca", inventory_pb2.NODE_TYPE_WAREHOUSE, ["US-CA"]),
        ("us", inventory_pb2.NODE_TYPE_THIRD_PARTY_LOGISTICS, ["US"]),
        ("de", inventory_pb2.NODE_TYPE_WAREHOUSE, ["DE"]),
        ("any", inventory_pb2.NODE_TYPE_DROPSHIP_SUPPLIER, []),
    ]:
        node_id = new_id(f"node-{label}")
        await stub.CreateFulfilmentNode(inventory_pb2.CreateFulfilmentNodeRequest(
            fulfilment_node=inventory_pb2.FulfilmentNode(
                node_id=node_id, type=kind, address=address(RENO), service_regions=regions)))
        made[node_id] = label

    async def labels(expression: str) -> set[str]:
        request = inventory_pb2.ListFulfilmentNodesRequest(filter=expression, page_size=2)
        found: set[str] = set()
        while True:
            response = await stub.ListFulfilmentNodes(request)
            found |= {made[n.node_id] for n in response.fulfilment_nodes if n.node_id in made}
            if not response.next_page_token:
                return found
            request.page_token = response.next_page_token

    assert await labels("") == {"ca", "us", "de", "any"}
    assert await labels('region = "US-CA"') == {"ca", "us", "any"}
    assert await labels('region = "US-TX"') == {"us", "any"}
    assert await labels('region = "DE-BY" AND type = WAREHOUSE') == {"de"}
    assert await labels("type != WAREHOUSE") == {"us", "any"}
    code, violations, _ = await refused(stub.ListFulfilmentNodes(
        inventory_pb2.ListFulfilmentNodesRequest(filter="type = CASTLE")))
    assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT, ["filter"])


# Filters no list understands: every one is INVALID_ARGUMENT on `filter`, never UNKNOWN. `F`
# stands for a text field of the list.
MALFORMED = [
    'F = "\\x"',  # an escape JSON does not know
    'F = "\\u12"',  # a short unicode escape
    'F = "abc',  # unterminated
    'F = "a" AND F = "b',
    'F = "a\nb"',  # a raw control character inside quotes
    'F = "\\u0000"',  # NUL, which PostgreSQL text cannot hold
    'F = "\\ud800"',  # half a surrogate pair: no UTF-8 for it
    "colour = red",  # unknown field
    "F",
    'F = "' + "x" * 5000 + '"',  # beyond the length of a filter
    " AND ".join(["F = x"] * 100),  # beyond the number of conditions
]
TEXT_FIELD = {"ListProducts": "sku", "ListFulfilmentNodes": "region", "ListStockLevels": "sku"}
WRONG_TYPES = {
    "ListProducts": ["fragile = 18446744073709551616", "fragile = 1", 'returnable = "yes"',
                     "backorder_policy = 99999999999999999999999"],
    "ListFulfilmentNodes": ["type = 18446744073709551616", 'region : "US"'],
    "ListStockLevels": ['sku : "MUG"', "sku != x"],
}


def list_request(method: str, expression: str) -> object:
    if method == "ListProducts":
        return inventory_pb2.ListProductsRequest(filter=expression)
    if method == "ListFulfilmentNodes":
        return inventory_pb2.ListFulfilmentNodesRequest(filter=expression)
    return inventory_pb2.ListStockLevelsRequest(parent="fulfilmentNodes/-", filter=expression)


@pytest.mark.parametrize(("method", "expression"), [
    *((method, template.replace("F", field)) for method, field in TEXT_FIELD.items()
      for template in MALFORMED),
    *((method, expression) for method, wrong in WRONG_TYPES.items() for expression in wrong),
])
async def test_a_malformed_filter_is_an_invalid_argument(stub: Stub, method: str,
                                                        expression: str) -> None:
    code, violations, _ = await refused(getattr(stub, method)(list_request(method, expression)))
    assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT, ["filter"])


async def test_every_list_in_a_request_is_bounded(stub: Stub) -> None:
    """One violation on the list that is too long, however long it is, and nothing written."""
    too_many_regions = full_node(new_id("node"))
    too_many_regions.service_regions[:] = [f"US-{i:03d}" for i in range(501)]
    too_many_bins = full_node(new_id("node"))
    del too_many_bins.bins[:]
    too_many_bins.bins.extend(inventory_pb2.Bin(bin_code=f"B-{i}", zone="z", walk_sequence=i)
                              for i in range(20_001))
    too_many_lines = full_node(new_id("node"))
    too_many_lines.address.address_lines[:] = ["1 Main St"] * 11
    for node, field in [(too_many_regions, "service_regions"), (too_many_bins, "bins"),
                        (too_many_lines, "address.address_lines")]:
        code, violations, _ = await refused(stub.CreateFulfilmentNode(
            inventory_pb2.CreateFulfilmentNodeRequest(fulfilment_node=node)))
        assert (code, fields(violations)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                              [f"fulfilment_node.{field}"])
        code, _, _ = await refused(stub.GetFulfilmentNode(
            inventory_pb2.GetFulfilmentNodeRequest(name=f"fulfilmentNodes/{node.node_id}")))
        assert code == grpc.StatusCode.NOT_FOUND

    sku = await add_sku(stub)
    code, violations, _ = await refused(stub.UpdateProduct(inventory_pb2.UpdateProductRequest(
        product=inventory_pb2.Product(sku=sku), update_mask=FieldMask(paths=["colour"] * 50))))
    assert fields(violations) == ["update_mask"]
    node_id = await add_node(stub)
    code, violations, _ = await refused(stub.UpdateFulfilmentNode(
        inventory_pb2.UpdateFulfilmentNodeRequest(
            fulfilment_node=inventory_pb2.FulfilmentNode(node_id=node_id),
            update_mask=FieldMask(paths=["priority"] * 50))))
    assert fields(violations) == ["update_mask"]

    code, violations, _ = await refused(stub.BatchUpsertProducts(
        inventory_pb2.BatchUpsertProductsRequest(products=[
            inventory_pb2.Product(sku=f"{sku}-{i}") for i in range(1001)])))
    assert fields(violations) == ["products"]
    code, violations, _ = await refused(stub.ReceiveStock(inventory_pb2.ReceiveStockRequest(
        parent=f"fulfilmentNodes/{node_id}", reference="PO-1",
        lines=[inventory_pb2.ReceiptLine(sku=sku, quantity=1)] * 1001)))
    assert fields(violations) == ["lines"]
    preview = inventory_pb2.PreviewAllocationRequest(
        shipping_address=address(RENO),
        lines=[inventory_pb2.PlannedLine(line_id=str(i), sku=sku, quantity=1)
               for i in range(501)])
    preview.shipping_address.address_lines[:] = ["x"] * 11
    code, violations, _ = await refused(stub.PreviewAllocation(preview))
    assert fields(violations) == ["shipping_address.address_lines", "lines"]
