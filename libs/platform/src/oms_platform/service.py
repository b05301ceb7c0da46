"""The runtime of one service: gRPC server, database, NATS, outbox relay and consumers.

Start-up: logging and tracing → database engine → NATS (retried until reachable) → streams →
outbox relay and event consumers → gRPC server with health (NOT_SERVING until the first
readiness check passes) and reflection.

Readiness has two levels. The overall health (service name "") needs the database AND NATS.
The named gRPC service needs only the database: while NATS is down the service keeps taking
requests, because the outbox holds their events until NATS returns — a readiness probe on the
named service keeps the pod in rotation through a NATS outage.

Shutdown on SIGTERM/SIGINT, in order: health NOT_SERVING → gRPC stop with a grace period →
consumers stop → relay stops → NATS drained → engine disposed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from sqlalchemy import MetaData, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms_platform import bus, pagination
from oms_platform.config import ServiceSettings
from oms_platform.consumer import EventConsumer, Subscription
from oms_platform.db import create_engine, session_factory, stored_key
from oms_platform.grpc_errors import DomainErrorInterceptor
from oms_platform.logging import configure_logging
from oms_platform.outbox import OutboxRelay
from oms_platform.telemetry import configure_tracing

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """What a service's handlers and servicers are given."""

    name: str
    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    metadata: MetaData
    nats: Client
    js: JetStreamContext


Registrar = Callable[[grpc.aio.Server, Runtime], Sequence[str]]
"""Adds the service's servicers to the server; returns their full service names."""


@dataclass
class ServiceDefinition:
    name: str
    metadata: MetaData
    register: Registrar
    subscriptions: Callable[[Runtime], Sequence[Subscription]] = lambda _: ()
    publishes: bool = True
    background: Sequence[Callable[[Runtime], Awaitable[None]]] = field(default_factory=tuple)


def _by_group(subscriptions: Sequence[Subscription]) -> dict[str, list[Subscription]]:
    """Subscriptions per consumer group: each group is a durable consumer of its own, with its
    own inbox rows, retries and dead letters, so that a read model that cannot yet apply an
    event never holds back (or dead-letters) the aggregate's handling of it."""
    groups: dict[str, list[Subscription]] = {}
    for subscription in subscriptions:
        groups.setdefault(subscription.group, []).append(subscription)
    return groups


class Service:
    def __init__(self, definition: ServiceDefinition, settings: ServiceSettings) -> None:
        self.definition = definition
        self.settings = settings
        self.health = HealthServicer()
        self._stopping = asyncio.Event()
        self._service_names: Sequence[str] = ()
        self.bound_port: int | None = None
        self.started = asyncio.Event()
        self.runtime: Runtime | None = None

    async def run(self, *, handle_signals: bool = True) -> None:
        definition, settings = self.definition, self.settings
        configure_logging(definition.name, settings.log_level, settings.log_format)
        configure_tracing(definition.name)
        engine = create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        pagination.use_key(await self._page_token_key(engine))
        nc = await bus.connect(settings.nats_url, name=f"oms-{definition.name}")
        js = nc.jetstream()
        if definition.publishes:
            await self._ensure_stream(js, definition.name)
        runtime = Runtime(definition.name, settings, engine, session_factory(engine),
                          definition.metadata, nc, js)
        self.runtime = runtime

        relay = OutboxRelay(
            engine,
            definition.metadata,
            js,
            batch_size=settings.outbox_batch_size,
            max_in_flight=settings.outbox_max_in_flight,
            retention_hours=settings.outbox_retention_hours,
            max_attempts=settings.outbox_max_attempts,
        )
        tasks = [asyncio.create_task(relay.run(), name="outbox-relay")]
        consumers: list[EventConsumer] = []
        subscriptions = definition.subscriptions(runtime)
        for producer in {s.message_type.DESCRIPTOR.full_name.split(".")[1]
                         for s in subscriptions}:
            await self._ensure_stream(js, producer)
        for group, members in _by_group(subscriptions).items():
            consumer = EventConsumer(
                js,
                runtime.sessions,
                definition.metadata,
                consumer=f"{definition.name}-{group}" if group else definition.name,
                subscriptions=members,
                batch_size=settings.consumer_batch_size,
                concurrency=settings.consumer_concurrency,
                max_deliver=settings.consumer_max_deliver,
            )
            await consumer.start()
            consumers.append(consumer)
        tasks += [asyncio.create_task(job(runtime)) for job in definition.background]

        server = grpc.aio.server(
            interceptors=[aio_server_interceptor(), DomainErrorInterceptor()],
            options=[
                ("grpc.so_reuseport", 0),
                # Clients hold one HTTP/2 connection; ageing it out makes them reconnect
                # through the Kubernetes Service, so new replicas get their share of load.
                ("grpc.max_connection_age_ms", 60_000),
                ("grpc.max_connection_age_grace_ms", 15_000),
            ],
        )
        self._service_names = definition.register(server, runtime)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*self._service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            server,
        )
        for name in ("", *self._service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.bound_port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
        await server.start()
        tasks.append(asyncio.create_task(self._watch_readiness(runtime), name="readiness"))
        log.info("service started", grpc=f"{settings.grpc_host}:{self.bound_port}")

        self.started.set()
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._stopping.set)
        await self._stopping.wait()

        log.info("shutting down")
        await self.health.enter_graceful_shutdown()
        await server.stop(settings.shutdown_grace_seconds)
        for consumer in consumers:
            await consumer.stop()
        await relay.stop()
        for task in tasks:
            if task.get_name() != "outbox-relay":
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await nc.drain()
        await engine.dispose()
        log.info("stopped")

    def stop(self) -> None:
        self._stopping.set()

    async def _page_token_key(self, engine: AsyncEngine) -> bytes:
        """The setting, or the key kept in the database, waiting for the database as
        :func:`bus.connect` waits for NATS."""
        if self.settings.page_token_key is not None:
            return self.settings.page_token_key.get_secret_value().encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await stored_key(engine, self.definition.metadata, pagination.KEY_NAME)
            except (OperationalError, InterfaceError) as error:
                log.warning("database not reachable, retrying", error=str(error))
                await asyncio.sleep(min(0.2 * attempt, 2.0))

    async def _ensure_stream(self, js: JetStreamContext, service: str) -> None:
        await bus.ensure_stream(js, service, max_age_seconds=self.settings.stream_max_age_seconds,
                                max_bytes=self.settings.stream_max_bytes)

    async def _watch_readiness(self, runtime: Runtime) -> None:
        SERVING = health_pb2.HealthCheckResponse.SERVING
        NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
        while True:
            database = await _database_reachable(runtime.engine)
            messaging = runtime.nats.is_connected
            for name in self._service_names:
                await self.health.set(name, SERVING if database else NOT_SERVING)
            await self.health.set("", SERVING if database and messaging else NOT_SERVING)
            await asyncio.sleep(self.settings.health_check_interval_seconds)


async def _database_reachable(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(2.0), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
