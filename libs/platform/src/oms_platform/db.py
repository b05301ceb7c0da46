"""Async SQLAlchemy 2 over psycopg 3, and the platform's tables every service owns."""

from __future__ import annotations

import secrets

from sqlalchemy import (
    DDL,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


OUTBOX_CHANNEL = "oms_outbox"

# The outbox wakes its relay itself: one NOTIFY per inserting statement, delivered on commit
# (and coalesced by PostgreSQL within a transaction), so no writer can forget it.
OUTBOX_NOTIFY_DDL = (
    f"""CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); RETURN NULL; END $$""",
    "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
    "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()",
)


def create_metadata() -> MetaData:
    """A service's metadata, holding its own tables and the platform's messaging tables."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    add_messaging_tables(metadata)
    return metadata


def add_messaging_tables(metadata: MetaData) -> None:
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("subject", Text, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        # Failed publishes the relay could not explain by an outage (see outbox.py).
        Column("attempts", Integer, nullable=False, server_default=text("0")),
    )
    Index(
        "ix_outbox_unpublished",
        outbox.c.id,
        postgresql_where=text("published_at IS NULL"),
    )
    for statement in OUTBOX_NOTIFY_DDL:
        event.listen(outbox, "after_create", DDL(statement))
    add_consumer_tables(metadata)
    # Outbox rows the relay set aside because they can never be published as they are; an
    # operator replays them into the outbox (``python -m oms_<service> outbox replay``).
    Table(
        "dead_outbox",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("subject", Text, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("error", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    # Secrets the service's replicas must share, generated once (see :func:`stored_key`).
    Table(
        "signing_keys",
        metadata,
        Column("name", String(100), primary_key=True),
        Column("key", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def add_consumer_tables(metadata: MetaData) -> None:
    """The inbox and the dead letters of a component that consumes events but publishes
    none (the gateway's outbound webhooks); part of every service's messaging tables."""
    Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    Table(
        "dead_letter",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("consumer", String(100), nullable=False),
        Column("event_id", Text, nullable=False),
        Column("subject", Text, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("error", Text, nullable=False),
        Column("deliveries", BigInteger, nullable=False),
        Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


async def stored_key(engine: AsyncEngine, metadata: MetaData, name: str) -> bytes:
    """The random 256-bit key ``name`` of this database, generated by whichever replica asks
    first (the others wait on its insert, then read the same row)."""
    keys = metadata.tables["signing_keys"]
    async with engine.begin() as conn:
        await conn.execute(pg_insert(keys).values(name=name, key=secrets.token_bytes(32))
                           .on_conflict_do_nothing())
        key: bytes = await conn.scalar(select(keys.c.key).where(keys.c.name == name))
    return key


def create_engine(url: str, *, pool_size: int = 20, max_overflow: int = 20) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def libpq_dsn(url: str) -> str:
    """The plain libpq form of a SQLAlchemy URL, for psycopg connections of our own."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
