"""Alembic, once for every service: each service keeps its own versions folder and calls
:func:`run_env` from its ``env.py``; :func:`upgrade` applies them programmatically.

The platform's own tables (outbox, inbox, dead letters, signing keys) are created by the
helpers below, which a service's migrations call instead of copying the tables by hand. Each
helper is the platform's schema at one step and, like any migration, never changes once
released: a change to these tables is a new helper that a new migration of every service
calls. The metadata in :mod:`oms_platform.db` is what the code runs against; a test migrates
each service and compares the two, so they cannot drift apart unseen.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, create_engine, pool
from sqlalchemy.dialects import postgresql


def alembic_config(script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(script_location: Path, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(script_location, database_url), revision)


def run_env(target_metadata: MetaData) -> None:
    """The body of a service's ``env.py`` (online mode: psycopg 3 in its sync flavour)."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def _now() -> sa.TextClause:
    return sa.text("now()")


def create_messaging_tables() -> None:
    """The outbox with the trigger that wakes its relay, the inbox and the consumers' dead
    letters: a service's first migration."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["id"],
                    postgresql_where=sa.text("published_at IS NULL"))
    # One NOTIFY per inserting statement, delivered on commit: no writer can forget it.
    op.execute("""CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('oms_outbox', ''); RETURN NULL; END $$""")
    op.execute("CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
               "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()")
    create_consumer_tables()


def drop_messaging_tables() -> None:
    drop_consumer_tables()
    op.drop_table("outbox")  # its index and trigger go with it
    op.execute("DROP FUNCTION outbox_notify()")


def create_consumer_tables() -> None:
    """The inbox and the consumers' dead letters alone: for a component that consumes events
    and publishes none (the gateway), and part of :func:`create_messaging_tables`."""
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox"),
    )
    op.create_table(
        "dead_letter",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("deliveries", sa.BigInteger(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letter"),
    )


def drop_consumer_tables() -> None:
    op.drop_table("dead_letter")
    op.drop_table("inbox")


def create_dead_outbox() -> None:
    """The relay's count of unexplained failures per outbox row, and the table it sets
    unpublishable rows aside in."""
    op.add_column("outbox", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"),
                                      nullable=False))
    op.create_table(
        "dead_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_outbox"),
        sa.UniqueConstraint("event_id", name="uq_dead_outbox_event_id"),
    )


def drop_dead_outbox() -> None:
    op.drop_table("dead_outbox")
    op.drop_column("outbox", "attempts")


def create_signing_keys() -> None:
    """Secrets the replicas of a service share: the key that signs its page tokens."""
    op.create_table(
        "signing_keys",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(),
                  nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_signing_keys"),
    )


def drop_signing_keys() -> None:
    op.drop_table("signing_keys")
