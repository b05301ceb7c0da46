"""The connection to NATS JetStream and the streams this suite publishes into."""

from __future__ import annotations

import asyncio

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError

from oms_platform.events import stream_name, stream_subjects

log = structlog.get_logger(__name__)

DUPLICATE_WINDOW_SECONDS = 120.0


async def connect(url: str, *, name: str, attempts: int | None = None) -> Client:
    """Connects, retrying until NATS answers, then reconnects forever on its own."""

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    async def on_error(error: Exception) -> None:
        log.warning("nats error", error=str(error))

    attempt = 0
    while True:
        attempt += 1
        try:
            return await nats.connect(
                url,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                error_cb=on_error,
            )
        except Exception as error:
            if attempts is not None and attempt >= attempts:
                raise
            log.warning("nats not reachable, retrying", url=url, error=str(error))
            await asyncio.sleep(min(0.2 * attempt, 2.0))


async def ensure_stream(js: JetStreamContext, service: str) -> None:
    """Creates (or updates) the stream of one producing service."""
    config = StreamConfig(
        name=stream_name(service),
        subjects=stream_subjects(service),
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
