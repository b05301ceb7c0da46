"""The inventory database: products, nodes, stock per node, reservations, backorders and an
append-only stock ledger, next to the outbox, inbox and dead letters."""

from __future__ import annotations

from oms_platform.db import create_metadata
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = create_metadata()

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("title", Text, nullable=False),
    Column("gtin", String(14), nullable=False),
    Column("weight_grams", BigInteger),
    Column("length_mm", Integer),
    Column("width_mm", Integer),
    Column("height_mm", Integer),
    Column("request_id", String(128), unique=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

fulfilment_nodes = Table(
    "fulfilment_nodes",
    metadata,
    Column("node_id", String(63), primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("node_type", String(40), nullable=False),
    Column("address", JSONB, nullable=False),
    Column("latitude", Double, nullable=False),
    Column("longitude", Double, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("request_id", String(128), unique=True),
    Column("create_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

stock_levels = Table(
    "stock_levels",
    metadata,
    Column("node_id", ForeignKey("fulfilment_nodes.node_id"), primary_key=True),
    Column("sku", ForeignKey("products.sku"), primary_key=True),
    Column("on_hand", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    CheckConstraint("reserved >= 0 AND on_hand >= reserved", name="reserved_within_on_hand"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("order_name", String(200), nullable=False),
    Column("line_id", String(64), nullable=False),
    Column("node_id", ForeignKey("fulfilment_nodes.node_id"), nullable=False),
    Column("sku", ForeignKey("products.sku"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("order_name", "line_id"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)

backorders = Table(
    "backorders",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("order_name", String(200), nullable=False),
    Column("line_id", String(64), nullable=False),
    # Not a foreign key: an order may name a SKU this service does not know (yet).
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("order_name", "line_id"),
    CheckConstraint("quantity > 0", name="quantity_positive"),
)

stock_ledger = Table(
    "stock_ledger",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("node_id", ForeignKey("fulfilment_nodes.node_id"), nullable=False),
    Column("sku", ForeignKey("products.sku"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("on_hand_delta", BigInteger, nullable=False),
    Column("reserved_delta", BigInteger, nullable=False),
    Column("reference", Text),
    # The idempotency key of an adjustment: a retry finds it here and changes nothing.
    Column("request_id", String(128), unique=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_stock_ledger_node_id_sku", stock_ledger.c.node_id, stock_ledger.c.sku)
