"""Products and fulfilment nodes between their messages, their rows and the domain's view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from google.protobuf import json_format
from google.type import timeofday_pb2
from oms.common.v1 import common_pb2
from oms.inventory.v1 import events_pb2, inventory_pb2
from oms_platform.values import LatLng, timestamp
from sqlalchemy import Row

from oms_inventory.catalogue.domain import Bin, NodeFields, ProductFields

POLICY_PREFIX = "BACKORDER_POLICY_"
NODE_TYPE_PREFIX = "NODE_TYPE_"

# The columns each path of an update mask writes (the paths of `domain.PRODUCT_PATHS` and
# `domain.NODE_PATHS`).
PRODUCT_COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "gtin": ("gtin",),
    "weight": ("weight_grams",),
    "dimensions": ("length_mm", "width_mm", "height_mm"),
    "fragile": ("fragile",),
    "hazardous": ("hazardous",),
    "minimum_order_quantity": ("minimum_order_quantity",),
    "returnable": ("returnable",),
    "backorder_policy": ("backorder_policy",),
    "backorder_limit": ("backorder_limit",),
    "reorder_point": ("reorder_point",),
    "supplier_lead_time_days": ("supplier_lead_time_days",),
}
NODE_COLUMNS: dict[str, tuple[str, ...]] = {
    "display_name": ("display_name",),
    "type": ("node_type",),
    "address": ("address", "latitude", "longitude"),
    "priority": ("priority",),
    "service_regions": ("service_regions",),
    "cutoff_time": ("cutoff_time",),
    "time_zone": ("time_zone",),
    "shipment_cost": ("shipment_cost", "shipment_cost_currency"),
    "bins": (),
}


def changes(values: Mapping[str, Any], paths: Sequence[str],
            columns: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """The columns an update of these mask paths writes."""
    return {column: values[column] for path in paths for column in columns[path]}


# --- Products ---

def product_fields(product: inventory_pb2.Product) -> ProductFields:
    known = product.backorder_policy in inventory_pb2.BackorderPolicy.values()
    return ProductFields(
        title=product.title,
        gtin=product.gtin,
        weight_grams=product.weight.grams,
        dimensions={name: getattr(product.dimensions, name)
                    for name in ("length_mm", "width_mm", "height_mm")},
        counts={name: getattr(product, name)
                for name in ("minimum_order_quantity", "backorder_limit", "reorder_point",
                             "supplier_lead_time_days")},
        backorder_policy=inventory_pb2.BackorderPolicy.Name(product.backorder_policy)
        .removeprefix(POLICY_PREFIX) if known else None,
        backorder_limit=product.backorder_limit,
    )


def product_values(product: inventory_pb2.Product) -> dict[str, Any]:
    """The columns of a product message; unset optional parts are NULL."""
    policy = product.backorder_policy or inventory_pb2.BACKORDER_POLICY_DENY
    has_dimensions = product.HasField("dimensions")
    return {
        "title": product.title,
        "gtin": product.gtin,
        "weight_grams": product.weight.grams if product.HasField("weight") else None,
        "length_mm": product.dimensions.length_mm if has_dimensions else None,
        "width_mm": product.dimensions.width_mm if has_dimensions else None,
        "height_mm": product.dimensions.height_mm if has_dimensions else None,
        "fragile": product.fragile,
        "hazardous": product.hazardous,
        "minimum_order_quantity": max(1, product.minimum_order_quantity),
        "returnable": product.returnable,
        "backorder_policy": inventory_pb2.BackorderPolicy.Name(policy).removeprefix(
            POLICY_PREFIX),
        "backorder_limit": product.backorder_limit,
        "reorder_point": product.reorder_point,
        "supplier_lead_time_days": product.supplier_lead_time_days,
    }


def product_message(row: Row[Any]) -> inventory_pb2.Product:
    product = inventory_pb2.Product(
        name=f"products/{row.sku}",
        sku=row.sku,
        title=row.title,
        gtin=row.gtin,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        fragile=row.fragile,
        hazardous=row.hazardous,
        minimum_order_quantity=row.minimum_order_quantity,
        returnable=row.returnable,
        backorder_policy=inventory_pb2.BackorderPolicy.Value(POLICY_PREFIX
                                                             + row.backorder_policy),
        backorder_limit=row.backorder_limit,
        reorder_point=row.reorder_point,
        supplier_lead_time_days=row.supplier_lead_time_days,
    )
    if row.weight_grams is not None:
        product.weight.grams = row.weight_grams
    if row.length_mm is not None:
        product.dimensions.CopyFrom(common_pb2.Dimensions(
            length_mm=row.length_mm, width_mm=row.width_mm, height_mm=row.height_mm))
    return product


def product_changes(rows: Sequence[Row[Any]], *,
                    deleted: bool) -> list[tuple[events_pb2.ProductChanged, str]]:
    """One `ProductChanged` per row, with its aggregate id."""
    now = timestamp(datetime.now(UTC))
    return [(events_pb2.ProductChanged(product=product_message(row), deleted=deleted,
                                       change_time=now), f"products/{row.sku}")
            for row in rows]


# --- Fulfilment nodes ---

def node_fields(node: inventory_pb2.FulfilmentNode) -> NodeFields:
    known = (node.type != inventory_pb2.NODE_TYPE_UNSPECIFIED
             and node.type in inventory_pb2.NodeType.values())
    address = node.address
    cutoff = node.cutoff_time
    return NodeFields(
        node_type=inventory_pb2.NodeType.Name(node.type).removeprefix(NODE_TYPE_PREFIX)
        if known else None,
        address_lines=list(address.address_lines) if node.HasField("address") else None,
        location=LatLng(address.location.latitude, address.location.longitude)
        if address.HasField("location") else None,
        priority=node.priority,
        service_regions=list(node.service_regions),
        cutoff=(cutoff.hours, cutoff.minutes, cutoff.seconds, cutoff.nanos)
        if node.HasField("cutoff_time") else None,
        time_zone=node.time_zone,
        shipment_cost=(node.shipment_cost.currency_code, node.shipment_cost.amount)
        if node.HasField("shipment_cost") else None,
        bins=[Bin(b.bin_code, b.zone, b.walk_sequence) for b in node.bins],
    )


def node_values(node: inventory_pb2.FulfilmentNode) -> dict[str, Any]:
    cutoff = node.cutoff_time
    cost = node.shipment_cost
    return {
        "display_name": node.display_name,
        "node_type": inventory_pb2.NodeType.Name(node.type).removeprefix(NODE_TYPE_PREFIX),
        "address": json_format.MessageToDict(node.address),
        "latitude": node.address.location.latitude,
        "longitude": node.address.location.longitude,
        "priority": node.priority,
        "service_regions": list(node.service_regions),
        "cutoff_time": time(cutoff.hours, cutoff.minutes, cutoff.seconds)
        if node.HasField("cutoff_time") else None,
        "time_zone": node.time_zone or "UTC",
        # No cost given is no cost known: never zero, which would make the node look free.
        "shipment_cost": Decimal(cost.amount) if node.HasField("shipment_cost") else None,
        "shipment_cost_currency": cost.currency_code if node.HasField("shipment_cost")
        else None,
    }


def bin_values(node: inventory_pb2.FulfilmentNode) -> list[dict[str, Any]]:
    return [{"bin_code": b.bin_code, "zone": b.zone, "walk_sequence": b.walk_sequence}
            for b in node.bins]


def money_amount(amount: Decimal) -> str:
    """Without trailing zeros beyond the cents, e.g. "4.95" or "12.00"."""
    text = format(amount.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def node_message(row: Row[Any], bins: Sequence[Row[Any]]) -> inventory_pb2.FulfilmentNode:
    node = inventory_pb2.FulfilmentNode(
        name=f"fulfilmentNodes/{row.node_id}",
        node_id=row.node_id,
        display_name=row.display_name,
        type=inventory_pb2.NodeType.Value(NODE_TYPE_PREFIX + row.node_type),
        address=json_format.ParseDict(row.address, common_pb2.Address()),
        priority=row.priority,
        create_time=timestamp(row.create_time),
        service_regions=row.service_regions,
        time_zone=row.time_zone,
        bins=[inventory_pb2.Bin(bin_code=b.bin_code, zone=b.zone, walk_sequence=b.walk_sequence)
              for b in bins],
        update_time=timestamp(row.update_time),
    )
    if row.shipment_cost is not None:
        node.shipment_cost.CopyFrom(common_pb2.Money(currency_code=row.shipment_cost_currency,
                                                     amount=money_amount(row.shipment_cost)))
    if row.cutoff_time is not None:
        node.cutoff_time.CopyFrom(timeofday_pb2.TimeOfDay(
            hours=row.cutoff_time.hour, minutes=row.cutoff_time.minute,
            seconds=row.cutoff_time.second))
    return node
