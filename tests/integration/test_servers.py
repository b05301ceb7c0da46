"""The test servers are real: PostgreSQL answers SQL and keeps data, JetStream keeps streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import nats
import psycopg
from oms_devtools.servers import EmbeddedNats, EmbeddedPostgres, docker_available, ensure_database
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_postgres_server_answers(postgres_server_url: str) -> None:
    engine = create_engine(postgres_server_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_ensure_database_is_idempotent(postgres_server_url: str) -> None:
    first = ensure_database(postgres_server_url, "oms_servers_idempotent")
    second = ensure_database(_libpq(postgres_server_url), "oms_servers_idempotent")
    assert first == second
    assert make_url(first).drivername == "postgresql+psycopg"
    assert make_url(first).database == "oms_servers_idempotent"
    with psycopg.connect(_libpq(first)) as conn:
        assert conn.execute("select current_database()").fetchone() == ("oms_servers_idempotent",)


def test_database_factory_gives_distinct_databases(database_factory: Callable[[str], str]) -> None:
    a, b = database_factory("orders"), database_factory("orders")
    assert a != b
    for url in (a, b):
        with psycopg.connect(_libpq(url)) as conn:
            assert conn.execute("select 1").fetchone() == (1,)


def test_embedded_postgres_keeps_data_across_restart(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    with server:
        port = server.port
        with psycopg.connect(server.libpq_dsn(), autocommit=True) as conn:
            conn.execute("create table kept (v text)")
            conn.execute("insert into kept values ('hello')")
        server.stop()
        assert not server.is_running()
        server.start()
        assert server.port == port
        with psycopg.connect(server.libpq_dsn()) as conn:
            assert conn.execute("select v from kept").fetchall() == [("hello",)]
        assert server.bin("pgbench").exists()
    assert not server.is_running()
    server.stop()  # idempotent


async def test_embedded_nats_jetstream_survives_restart(private_nats: EmbeddedNats) -> None:
    nc = await nats.connect(private_nats.url)
    js = nc.jetstream()
    await js.add_stream(name="SERVERS", subjects=["servers.>"])
    ack = await js.publish("servers.test", b"kept", headers={"Nats-Msg-Id": "m-1"})
    assert ack.seq == 1
    await nc.close()

    port = private_nats.port
    private_nats.restart()
    assert private_nats.port == port

    nc = await nats.connect(private_nats.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("SERVERS")
        assert info.state.messages == 1
        msg = await js.get_msg("SERVERS", 1)
        assert msg.data == b"kept"
    finally:
        await nc.close()


def test_embedded_nats_stop_and_kill_are_idempotent(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats").start()
    server.kill()
    server.kill()
    server.stop()
    assert not server.running
    server.start()
    assert server.running
    server.stop()
    server.stop()


def test_docker_probe_is_quick() -> None:
    docker_available.cache_clear()
    started = time.monotonic()
    docker_available()
    assert time.monotonic() - started < 5
