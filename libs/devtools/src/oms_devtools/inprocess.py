"""Runs a service inside the test's event loop, against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from oms_platform.config import ServiceSettings
from oms_platform.migrations import upgrade
from oms_platform.service import Service, ServiceDefinition


@contextlib.asynccontextmanager
async def running_service(
    definition: ServiceDefinition,
    migrations: Path,
    *,
    database_url: str,
    nats_url: str,
    **overrides: object,
) -> AsyncIterator[Service]:
    """Migrates the database, starts the service on a free port, yields it, stops it.

    ``service.bound_port`` is the gRPC port; ``service.runtime`` its engine and NATS.
    """
    await asyncio.to_thread(upgrade, migrations, database_url)
    settings = ServiceSettings(
        database_url=database_url,
        nats_url=nats_url,
        grpc_port=0,
        shutdown_grace_seconds=1.0,
        health_check_interval_seconds=0.5,
        log_format="console",
        **overrides,  # type: ignore[arg-type]
    )
    service = Service(definition, settings)
    task = asyncio.create_task(service.run(handle_signals=False))
    started = asyncio.create_task(service.started.wait())
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()
    try:
        yield service
    finally:
        service.stop()
        await task
