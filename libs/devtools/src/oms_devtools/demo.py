"""Demo data for ``make run``: warehouses in four regions, a small catalogue, stock.

Loaded through the inventory service's public API with fixed request ids, so loading it
again on every start changes nothing.
"""

from __future__ import annotations

import grpc
from google.type import latlng_pb2
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc

NODES = [
    ("us-west-reno", "Reno fulfilment centre", "Reno", "NV", "89502", "US", 39.5296, -119.8138, 1),
    ("us-east-edison", "Edison fulfilment centre", "Edison", "NJ", "08817", "US",
     40.5187, -74.4121, 2),
    ("eu-central-frankfurt", "Frankfurt 3PL", "Frankfurt am Main", "HE", "60311", "DE",
     50.1109, 8.6821, 1),
    ("uk-coventry", "Coventry warehouse", "Coventry", "", "CV1 2GT", "GB", 52.4068, -1.5197, 1),
]

PRODUCTS = [
    ("TSHIRT-BLK-M", "T-shirt, black, M", "4006381333931", 180, (300, 250, 20)),
    ("HOODIE-GRY-L", "Hoodie, grey, L", "4006381333948", 650, (350, 300, 60)),
    ("MUG-WHT-11OZ", "Mug, white, 11 oz", "4006381333955", 350, (120, 100, 100)),
    ("POSTER-A2", "Poster, A2, rolled", "4006381333962", 120, (620, 80, 80)),
    ("SNEAKER-42", "Sneaker, size 42", "4006381333979", 900, (330, 220, 120)),
]

STOCK = {
    "us-west-reno": {"TSHIRT-BLK-M": 120, "HOODIE-GRY-L": 40, "MUG-WHT-11OZ": 200},
    "us-east-edison": {"TSHIRT-BLK-M": 80, "HOODIE-GRY-L": 60, "POSTER-A2": 150,
                       "SNEAKER-42": 25},
    "eu-central-frankfurt": {"TSHIRT-BLK-M": 100, "MUG-WHT-11OZ": 90, "SNEAKER-42": 40},
    "uk-coventry": {"TSHIRT-BLK-M": 60, "HOODIE-GRY-L": 30, "POSTER-A2": 50},
}


def load(inventory_target: str) -> None:
    with grpc.insecure_channel(inventory_target) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        for node_id, title, city, area, postcode, country, lat, lng, priority in NODES:
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
                    ),
                    request_id=f"demo-node-{node_id}",
                ),
                timeout=10,
            )
        for sku, title, gtin, grams, (length, width, height) in PRODUCTS:
            stub.CreateProduct(
                inventory_pb2.CreateProductRequest(
                    product=inventory_pb2.Product(
                        sku=sku,
                        title=title,
                        gtin=gtin,
                        weight=common_pb2.Weight(grams=grams),
                        dimensions=common_pb2.Dimensions(
                            length_mm=length, width_mm=width, height_mm=height
                        ),
                    ),
                    request_id=f"demo-product-{sku}",
                ),
                timeout=10,
            )
        for node_id, levels in STOCK.items():
            for sku, units in levels.items():
                stub.AdjustStock(
                    inventory_pb2.AdjustStockRequest(
                        node_id=node_id,
                        sku=sku,
                        delta=units,
                        reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT,
                        request_id=f"demo-receipt-{node_id}-{sku}",
                    ),
                    timeout=10,
                )
