"""What a caller gets when a method fails with something other than a domain error: over
real gRPC, with the failures provoked on a real PostgreSQL (a deadlock, a lock held, a
serialization failure, a server that is not there or drops the connection, a value out of
range, a bug). Nothing ends as UNKNOWN, and nothing internal is told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import pytest
import structlog
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from oms_devtools.servers import free_port
from oms_devtools.testkit import eventually
from oms_platform import grpc_errors
from oms_platform.db import create_engine
from oms_platform.grpc_errors import DomainErrorInterceptor
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


@dataclass
class Probe:
    """A database with two rows to fight over, and the moments a test and a method meet."""

    engine: AsyncEngine
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    pid: int = 0

    async def waited_past_a_deadlock_check(self, pid: int) -> bool:
        async with self.engine.connect() as conn:
            n = await conn.scalar(text(
                "SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted AND waitstart < "
                "clock_timestamp() - 2 * current_setting('deadlock_timeout')::interval"),
                {"pid": pid})
        return bool(n)


Method = Callable[[Probe], Awaitable[None]]
Provoke = Callable[[Probe, AsyncConnection], Awaitable[None]]


async def deadlock(probe: Probe) -> None:
    async with probe.engine.begin() as conn:
        await conn.execute(text("UPDATE probe SET n = n + 1 WHERE id = 1"))
        probe.ready.set()
        await probe.go.wait()
        await conn.execute(text("UPDATE probe SET n = n + 1 WHERE id = 2"))


async def provoke_deadlock(probe: Probe, conn: AsyncConnection) -> None:
    """Holds row 2 and queues for row 1, which the method holds; once this wait has had its
    deadlock check (and found none), lets the method ask for row 2. The cycle is then found
    by the method's own check alone, so it is the one rolled back, however slow the
    machine."""
    pid = int(await conn.scalar(text("SELECT pg_backend_pid()")))
    await conn.execute(text("UPDATE probe SET n = n + 1 WHERE id = 2"))
    await probe.ready.wait()
    queued = asyncio.create_task(conn.execute(text("UPDATE probe SET n = n + 1 WHERE id = 1")))
    await eventually(lambda: probe.waited_past_a_deadlock_check(pid), timeout=30,
                     what="this side's deadlock check done")
    probe.go.set()
    await queued


async def nowait(probe: Probe) -> None:
    async with probe.engine.begin() as conn:
        await conn.execute(text("SELECT * FROM probe WHERE id = 1 FOR UPDATE NOWAIT"))


async def provoke_nowait(probe: Probe, conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT * FROM probe WHERE id = 1 FOR UPDATE"))
    probe.go.set()


async def serialization(probe: Probe) -> None:
    async with probe.engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            await conn.execute(text("SELECT n FROM probe WHERE id = 1"))  # the snapshot
            probe.ready.set()
            await probe.go.wait()
            await conn.execute(text("UPDATE probe SET n = n + 1 WHERE id = 1"))


async def provoke_serialization(probe: Probe, conn: AsyncConnection) -> None:
    await probe.ready.wait()
    await conn.execute(text("UPDATE probe SET n = n + 1 WHERE id = 1"))
    await conn.commit()
    probe.go.set()


async def connection_lost(probe: Probe) -> None:
    async with probe.engine.begin() as conn:
        probe.pid = int(await conn.scalar(text("SELECT pg_backend_pid()")))
        probe.ready.set()
        await probe.go.wait()
        await conn.execute(text("SELECT 1"))


async def provoke_connection_lost(probe: Probe, conn: AsyncConnection) -> None:
    await probe.ready.wait()
    # With a timeout, pg_terminate_backend waits until the backend has exited (true) or the
    # time is up (false). (Polling pg_stat_activity instead would read one snapshot for the
    # whole transaction, and could wait forever on a pid it saw before the exit.)
    terminated = await conn.scalar(text("SELECT pg_terminate_backend(:pid, 30000)"),
                                   {"pid": probe.pid})
    assert terminated, "the method's connection did not end within 30 s"
    probe.go.set()


async def out_of_range(probe: Probe) -> None:
    async with probe.engine.connect() as conn:
        await conn.execute(text("SELECT 2147483648::int"))


async def undefined_table(probe: Probe) -> None:
    async with probe.engine.connect() as conn:
        await conn.execute(text("SELECT * FROM secret_internal_table"))


async def crash(probe: Probe) -> None:
    raise RuntimeError("secret internal detail")


async def nothing(probe: Probe, conn: AsyncConnection) -> None:
    probe.go.set()


CASES: dict[str, tuple[Method, Provoke, grpc.StatusCode, str]] = {
    "deadlock": (deadlock, provoke_deadlock, grpc.StatusCode.ABORTED, "CONTENTION"),
    "lock not available": (nowait, provoke_nowait, grpc.StatusCode.ABORTED, "CONTENTION"),
    "serialization failure": (serialization, provoke_serialization, grpc.StatusCode.ABORTED,
                              "CONTENTION"),
    "connection lost": (connection_lost, provoke_connection_lost, grpc.StatusCode.UNAVAILABLE,
                        "DATABASE_UNAVAILABLE"),
    "value out of range": (out_of_range, nothing, grpc.StatusCode.INVALID_ARGUMENT,
                           "INVALID_VALUE"),
    "undefined table": (undefined_table, nothing, grpc.StatusCode.INTERNAL, "INTERNAL"),
    "bug": (crash, nothing, grpc.StatusCode.INTERNAL, "INTERNAL"),
}


@pytest.fixture
async def database(database_factory: Callable[[str], str]) -> AsyncIterator[str]:
    url = database_factory("grpc_errors")
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE probe (id int PRIMARY KEY, n int NOT NULL)"))
        await conn.execute(text("INSERT INTO probe VALUES (1, 0), (2, 0)"))
    await engine.dispose()
    yield url


@dataclass
class Caller:
    call: Callable[[str], Awaitable[bytes]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Probe, Method], Awaitable[Caller]]]:
    """Serves one method over real gRPC behind the interceptor."""
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def start(probe: Probe, method: Method) -> Caller:
        async def behaviour(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await method(probe)
            return b"done"

        server = grpc.aio.server(interceptors=[DomainErrorInterceptor()])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "oms.test.v1.Probe", {"Run": grpc.unary_unary_rpc_method_handler(behaviour)})])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)

        async def call(name: str) -> bytes:
            return await channel.unary_unary(f"/oms.test.v1.Probe/{name}")(b"")

        return Caller(call)

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)


def _details(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    status = rpc_status.from_call(error)
    assert status is not None, "no rich status"
    return status


def _unpack(status: status_pb2.Status, kind: type) -> list:  # type: ignore[type-arg]
    found = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


@pytest.mark.parametrize("case", CASES)
async def test_failures_map_to_codes_a_caller_can_act_on(
    case: str, database: str, serve: Callable[[Probe, Method], Awaitable[Caller]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    method, provoke, code, reason = CASES[case]
    probe = Probe(create_engine(database))
    other = create_engine(database)
    caller = await serve(probe, method)
    try:
        with structlog.testing.capture_logs() as logs:
            monkeypatch.setattr(grpc_errors, "log", structlog.get_logger("grpc-errors-test"))
            async with other.connect() as conn:
                call = asyncio.create_task(caller.call("Run"))
                await provoke(probe, conn)
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await asyncio.wait_for(call, 30)
                await conn.rollback()
    finally:
        await probe.engine.dispose()
        await other.dispose()

    error = raised.value
    assert error.code() == code, error.details()
    status = _details(error)
    [info] = _unpack(status, error_details_pb2.ErrorInfo)
    assert info.reason == reason
    retry = _unpack(status, error_details_pb2.RetryInfo)
    if code in (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE):
        assert [r.retry_delay.ToTimedelta().total_seconds() > 0 for r in retry] == [True]
    else:
        assert retry == []
    assert "secret" not in (error.details() or "")
    [line] = [entry for entry in logs if entry["event"] == "request failed"]
    assert line["method"] == "/oms.test.v1.Probe/Run"
    assert line["log_level"] == ("error" if code == grpc.StatusCode.INTERNAL else "warning")
    assert line["error_type"]


async def test_a_database_that_is_not_there_is_unavailable(
    serve: Callable[[Probe, Method], Awaitable[Caller]], database: str,
) -> None:
    nowhere = make_url(database).set(port=free_port()).render_as_string(hide_password=False)
    probe = Probe(create_engine(nowhere))
    caller = await serve(probe, out_of_range)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await caller.call("Run")
    finally:
        await probe.engine.dispose()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    [info] = _unpack(_details(raised.value), error_details_pb2.ErrorInfo)
    assert info.reason == "DATABASE_UNAVAILABLE"


async def test_no_connection_free_in_the_pool_in_time_is_unavailable(
    serve: Callable[[Probe, Method], Awaitable[Caller]], database: str,
) -> None:
    probe = Probe(create_async_engine(database, pool_size=1, max_overflow=0, pool_timeout=0.2))
    caller = await serve(probe, out_of_range)
    try:
        async with probe.engine.connect():  # the pool's one connection
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await caller.call("Run")
    finally:
        await probe.engine.dispose()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
