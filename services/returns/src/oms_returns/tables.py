"""The returns database: return policies, returns (RMAs) and their lines, the units of each
order line already in a return, next to the outbox, inbox and dead letters; and the one way
every capability's events reach the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from oms_platform import outbox
from oms_platform.db import create_metadata
from sqlalchemy import Column, DateTime, String, Table, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

SOURCE = "/oms/returns"

metadata = create_metadata()

# Return policies: the scope as columns (one policy per scope), the terms as the policy's JSON
# (read whole, never queried into).
return_policies = Table(
    "return_policies",
    metadata,
    Column("id", String(63), primary_key=True),
    Column("request_id", String(200), nullable=False, unique=True),
    Column("channel", String(200), nullable=False),
    Column("sku", String(200), nullable=False),
    Column("category", String(100), nullable=False),
    Column("terms", JSONB, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    UniqueConstraint("channel", "sku", "category", name="uq_return_policies_scope"),
)


async def add_events(session: AsyncSession,
                     messages: Sequence[tuple[Message, str, str | None]]) -> None:
    """Adds events, each with its aggregate id and partition (none here), to the outbox in one
    statement, in the caller's transaction."""
    await outbox.add_events(session, metadata.tables["outbox"], messages, source=SOURCE)
