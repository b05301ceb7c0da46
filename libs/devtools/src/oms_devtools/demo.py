"""Demo data for ``make run``: warehouses in four regions with their bins, a small catalogue
with backorder policies and lead times, received stock, and a channel buffer.

Loaded through the inventory service's public API; every call is idempotent (fixed request
ids, an upsert for the catalogue), so loading it again on every start changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
from google.type import latlng_pb2, timeofday_pb2
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc

ALLOW = inventory_pb2.BACKORDER_POLICY_ALLOW
DENY = inventory_pb2.BACKORDER_POLICY_DENY
UP_TO = inventory_pb2.BACKORDER_POLICY_ALLOW_UP_TO_LIMIT

# node id, name, city, area, postcode, country, lat, lng, priority, serves, time zone, cost
NODES = [
    ("us-west-reno", "Reno fulfilment centre", "Reno", "NV", "89502", "US", 39.5296, -119.8138,
     1, ["US", "CA"], "America/Los_Angeles", "6.50"),
    ("us-east-edison", "Edison fulfilment centre", "Edison", "NJ", "08817", "US",
     40.5187, -74.4121, 2, ["US", "CA"], "America/New_York", "5.90"),
    ("eu-central-frankfurt", "Frankfurt 3PL", "Frankfurt am Main", "HE", "60311", "DE",
     50.1109, 8.6821, 1, ["DE", "AT", "CH", "FR", "NL", "BE", "IT", "ES"], "Europe/Berlin",
     "4.80"),
    ("uk-coventry", "Coventry warehouse", "Coventry", "", "CV1 2GT", "GB", 52.4068, -1.5197, 1,
     ["GB", "IE"], "Europe/London", "4.20"),
]
# Two zones of three aisles each; bin codes sort in walking order.
BINS = [(f"{zone}-{aisle:02d}-{level}", zone, index)
        for index, (zone, aisle, level) in enumerate(
            (zone, aisle, level) for zone in ("A", "B") for aisle in (1, 2, 3)
            for level in ("1", "2"))]

# sku, title, gtin, grams, (l, w, h mm), fragile, MOQ, policy, limit, lead time days
PRODUCTS = [
    ("TSHIRT-BLK-M", "T-shirt, black, M", "4006381333931", 180, (300, 250, 20), False, 1,
     ALLOW, 0, 14),
    ("HOODIE-GRY-L", "Hoodie, grey, L", "4006381333948", 650, (350, 300, 60), False, 1,
     UP_TO, 50, 21),
    ("MUG-WHT-11OZ", "Mug, white, 11 oz", "4006381333955", 350, (120, 100, 100), True, 1,
     DENY, 0, 10),
    ("POSTER-A2", "Poster, A2, rolled", "4006381333962", 120, (620, 80, 80), False, 1,
     DENY, 0, 7),
    ("SNEAKER-42", "Sneaker, size 42", "4006381333979", 900, (330, 220, 120), False, 1,
     ALLOW, 0, 30),
    ("STICKER-PACK", "Sticker pack", "4006381333986", 10, (100, 70, 2), False, 5,
     DENY, 0, 5),
]

STOCK = {
    "us-west-reno": {"TSHIRT-BLK-M": 120, "HOODIE-GRY-L": 40, "MUG-WHT-11OZ": 200,
                     "STICKER-PACK": 500},
    "us-east-edison": {"TSHIRT-BLK-M": 80, "HOODIE-GRY-L": 60, "POSTER-A2": 150,
                       "SNEAKER-42": 25},
    "eu-central-frankfurt": {"TSHIRT-BLK-M": 100, "MUG-WHT-11OZ": 90, "SNEAKER-42": 40},
    "uk-coventry": {"TSHIRT-BLK-M": 60, "HOODIE-GRY-L": 30, "POSTER-A2": 50},
}

# Units of every SKU held back from the marketplace, so that it cannot sell the last ones.
CHANNEL_BUFFERS = [("amazon-us", "*", 5)]


def load(inventory_target: str) -> None:
    with grpc.insecure_channel(inventory_target) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        for (node_id, title, city, area, postcode, country, lat, lng, priority, serves, zone,
             cost) in NODES:
            stub.CreateFulfilmentNode(
                inventory_pb2.CreateFulfilmentNodeRequest(
                    fulfilment_node=inventory_pb2.FulfilmentNode(
                        node_id=node_id,
                        display_name=title,
                        type=inventory_pb2.NODE_TYPE_WAREHOUSE,
                        priority=priority,
                        address=common_pb2.Address(
                            recipient=title,
                            address_lines=["1 Logistics Way"],
                            locality=city,
                            administrative_area=area,
                            postal_code=postcode,
                            region_code=country,
                            location=latlng_pb2.LatLng(latitude=lat, longitude=lng),
                        ),
                        service_regions=serves,
                        cutoff_time=timeofday_pb2.TimeOfDay(hours=15),
                        time_zone=zone,
                        shipment_cost=common_pb2.Money(
                            currency_code="EUR" if country == "DE" else
                            "GBP" if country == "GB" else "USD", amount=cost),
                        bins=[inventory_pb2.Bin(bin_code=code, zone=area_zone,
                                                walk_sequence=sequence)
                              for code, area_zone, sequence in BINS],
                    ),
                    request_id=f"demo-node-{node_id}",
                ),
                timeout=10,
            )
        stub.BatchUpsertProducts(
            inventory_pb2.BatchUpsertProductsRequest(
                products=[
                    inventory_pb2.Product(
                        sku=sku,
                        title=title,
                        gtin=gtin,
                        weight=common_pb2.Weight(grams=grams),
                        dimensions=common_pb2.Dimensions(
                            length_mm=length, width_mm=width, height_mm=height
                        ),
                        fragile=fragile,
                        returnable=True,
                        minimum_order_quantity=moq,
                        backorder_policy=policy,
                        backorder_limit=limit,
                        supplier_lead_time_days=lead_time,
                    )
                    for (sku, title, gtin, grams, (length, width, height), fragile, moq, policy,
                         limit, lead_time) in PRODUCTS
                ]
            ),
            timeout=10,
        )
        for node_id, levels in STOCK.items():
            stub.ReceiveStock(
                inventory_pb2.ReceiveStockRequest(
                    parent=f"fulfilmentNodes/{node_id}",
                    reference=f"PO-DEMO-{node_id}",
                    lines=[inventory_pb2.ReceiptLine(sku=sku, quantity=units)
                           for sku, units in levels.items()],
                    request_id=f"demo-receipt-{node_id}",
                ),
                timeout=10,
            )
        for channel_id, sku, units in CHANNEL_BUFFERS:
            stub.SetChannelBuffer(
                inventory_pb2.SetChannelBufferRequest(
                    channel_buffer=inventory_pb2.ChannelBuffer(
                        channel=channel_id, sku=sku, buffer=units)
                ),
                timeout=10,
            )


# id, kind, channels: one partner of each kind, the channel and payment provider on the
# demo channel.
PARTNERS = [
    ("demo-shop", "sales-channel", ["shopify-demo"]),
    ("demo-3pl", "3pl", []),
    ("demo-carrier", "carrier", []),
    ("demo-payments", "payment-provider", ["shopify-demo"]),
]


def partners(gateway_env: dict[str, str], path: Path) -> dict[str, dict[str, object]]:
    """Creates the demo partners that do not exist yet (through the gateway's CLI) and keeps
    their credentials in ``path``; a partner whose key was lost gets a new one, the old
    revoked at once. Keys are shown once, so the file is the only copy."""
    known: dict[str, dict[str, object]] = json.loads(path.read_text()) if path.exists() else {}
    cli = [sys.executable, "-m", "oms_gateway", "partners"]
    listed = subprocess.run([*cli, "list"], env=gateway_env, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    existing = {json.loads(line)["id"] for line in listed}
    for partner_id, kind, channels in PARTNERS:
        if partner_id in existing and partner_id in known:
            continue
        if partner_id in existing:
            argv = [*cli, "rotate-key", partner_id, "--overlap-hours", "0"]
        else:
            argv = [*cli, "create", "--id", partner_id, "--name", partner_id, "--kind", kind,
                    *(arg for channel in channels for arg in ("--channel", channel))]
        issued = json.loads(subprocess.run(argv, env=gateway_env, capture_output=True,
                                           text=True, check=True).stdout)
        known[partner_id] = {"kind": kind, "channels": channels, "apiKey": issued["apiKey"]}
    path.write_text(json.dumps(known, indent=2) + "\n")
    path.chmod(0o600)
    return known
