"""The fulfilment database, next to the outbox, inbox and dead letters; and the one way every
capability's events reach the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from oms_platform import outbox
from oms_platform.db import create_metadata
from sqlalchemy.ext.asyncio import AsyncSession

SOURCE = "/oms/fulfilment"

metadata = create_metadata()


async def add_events(session: AsyncSession, messages: Sequence[tuple[Message, str]]) -> None:
    """Adds events, each with its aggregate id, to the outbox in one statement, in the
    caller's transaction."""
    await outbox.add_events(session, metadata.tables["outbox"],
                            [(message, aggregate_id, None) for message, aggregate_id in messages],
                            source=SOURCE)
