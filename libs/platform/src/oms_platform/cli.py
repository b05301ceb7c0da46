"""The command line of every service: ``python -m oms_<service> [serve|migrate]``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from oms_platform.config import ServiceSettings
from oms_platform.migrations import upgrade
from oms_platform.service import Service, ServiceDefinition


def main(definition: ServiceDefinition, migrations: Path) -> None:
    parser = argparse.ArgumentParser(prog=f"oms-{definition.name}")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args()
    settings = ServiceSettings()  # type: ignore[call-arg]
    if args.command == "migrate":
        upgrade(migrations, settings.database_url)
        return
    asyncio.run(Service(definition, settings).run())
