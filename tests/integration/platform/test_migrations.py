"""Every service's migrations build exactly the schema its code runs against: the platform's
messaging tables (created by the platform's migration helpers) and the service's own."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from oms_inventory.app import MIGRATIONS as INVENTORY_MIGRATIONS
from oms_inventory.tables import metadata as inventory_metadata
from oms_orders.app import MIGRATIONS as ORDERS_MIGRATIONS
from oms_orders.tables import metadata as orders_metadata
from oms_platform.db import create_metadata
from oms_platform.migrations import upgrade
from sqlalchemy import MetaData, create_engine, text

SERVICES = {
    "orders": (ORDERS_MIGRATIONS, orders_metadata),
    "inventory": (INVENTORY_MIGRATIONS, inventory_metadata),
}
CREATE_TABLE = re.compile(r"create_table\(\s*[\"']([a-z_]+)[\"']")


@pytest.mark.parametrize("service", SERVICES)
def test_migrated_schema_matches_the_metadata(
    service: str, database_factory: Callable[[str], str]
) -> None:
    migrations, metadata = SERVICES[service]
    url = database_factory(f"schema_{service}")
    upgrade(migrations, url)
    assert _differences(url, metadata) == []
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            # Not in the metadata's comparison: the trigger that wakes the outbox relay.
            triggers = conn.scalars(text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'outbox'::regclass "
                "AND NOT tgisinternal")).all()
    finally:
        engine.dispose()
    assert triggers == ["outbox_notify"]


def _differences(url: str, metadata: MetaData) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_messaging_tables_are_not_copied_into_service_migrations() -> None:
    """The platform's tables are created by its helpers alone, so there is one definition of
    them to keep in step with the code."""
    platform_tables = {table.name for table in create_metadata().sorted_tables}
    for migrations, _ in SERVICES.values():
        for version in sorted(Path(migrations, "versions").glob("*.py")):
            created = set(CREATE_TABLE.findall(version.read_text()))
            assert not created & platform_tables, f"{version.name} copies {created}"
