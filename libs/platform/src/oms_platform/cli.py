"""The command line of every service::

    python -m oms_<service> [serve]               run it
    python -m oms_<service> migrate               apply its migrations
    python -m oms_<service> outbox list|count     the events the relay set aside
    python -m oms_<service> outbox replay ID...|--all

``outbox`` is for operators: ``list`` prints set-aside events oldest first, one JSON object
a line (dead outbox id, event id, subject, size, attempts, error, times), at most ``--limit``
of them; ``replay`` moves the given ones (dead outbox ids or event ids) back into the outbox,
once their cause is fixed, and the running relay publishes them again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import MetaData

from oms_platform import outbox
from oms_platform.config import ServiceSettings
from oms_platform.db import create_engine
from oms_platform.migrations import upgrade
from oms_platform.service import Service, ServiceDefinition

LIST_LIMIT_MAX = 10_000


def main(definition: ServiceDefinition, migrations: Path,
         argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"oms-{definition.name}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service (the default)")
    commands.add_parser("migrate", help="apply the database migrations")
    dead = commands.add_parser("outbox", help="events the outbox relay set aside")
    actions = dead.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="print them, oldest first, as JSON lines")
    listing.add_argument("--limit", type=_limit, default=100, help=f"1 to {LIST_LIMIT_MAX}")
    actions.add_parser("count", help="print how many there are")
    replay = actions.add_parser("replay", help="move them back into the outbox")
    replay.add_argument("ids", nargs="*", type=_dead_id, help="dead outbox ids or event ids")
    replay.add_argument("--all", action="store_true", help="every set-aside event")
    args = parser.parse_args(argv)
    if args.command == "outbox" and args.action == "replay" and not args.ids and not args.all:
        replay.error("give the ids to replay, or --all")

    settings = ServiceSettings()  # type: ignore[call-arg]
    if args.command == "migrate":
        upgrade(migrations, settings.database_url)
    elif args.command == "outbox":
        asyncio.run(_outbox(args, definition.metadata, settings.database_url))
    else:
        asyncio.run(Service(definition, settings).run())


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= LIST_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to {LIST_LIMIT_MAX}")
    return int(value)


def _dead_id(value: str) -> int | uuid.UUID:
    try:
        return int(value)
    except ValueError:
        try:
            return uuid.UUID(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is neither a dead outbox id nor an "
                                             "event id") from None


async def _outbox(args: argparse.Namespace, metadata: MetaData, database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        if args.action == "list":
            for event in await outbox.dead_events(engine, metadata, limit=args.limit):
                print(json.dumps({**vars(event), "event_id": str(event.event_id),
                                  "created_at": event.created_at.isoformat(),
                                  "failed_at": event.failed_at.isoformat()}))
        elif args.action == "count":
            print(await outbox.count_dead_events(engine, metadata))
        else:
            moved = await outbox.replay_dead_events(engine, metadata,
                                                    None if args.all else args.ids)
            print(f"{moved} moved back into the outbox")
    finally:
        await engine.dispose()
