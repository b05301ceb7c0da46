"""The returns database: return policies, returns (RMAs) and their lines, the units of each
order line already in a return, next to the outbox, inbox and dead letters; and the one way
every capability's events reach the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from oms_platform import outbox
from oms_platform.db import create_metadata
from sqlalchemy.ext.asyncio import AsyncSession

SOURCE = "/oms/returns"

metadata = create_metadata()


async def add_events(session: AsyncSession,
                     messages: Sequence[tuple[Message, str, str | None]]) -> None:
    """Adds events, each with its aggregate id and partition (none here), to the outbox in one
    statement, in the caller's transaction."""
    await outbox.add_events(session, metadata.tables["outbox"], messages, source=SOURCE)
