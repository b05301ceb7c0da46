"""The connection to NATS JetStream and the streams this suite publishes into.

Every stream is bounded in age and in size, oldest messages going first (``discard=old``):

- ``max_age`` (``OMS_STREAM_MAX_AGE_SECONDS``, 7 days): consumers and 3PL integrations replay
  from the stream, so it keeps a week, long enough for a partner who was down over a long
  weekend or a consumer redeployed after a bad release to catch up from its last ack.
- ``max_bytes`` (``OMS_STREAM_MAX_BYTES``, 1 GiB): JetStream reserves a stream's cap in its
  store when the stream is created, and refuses a stream the store cannot hold, so the default
  must let all five streams fit on a developer's machine; at about 1 KiB an event it holds a
  million of them. Production sets it to its share of the JetStream volume.

``discard=old`` rather than ``new``: a full stream that refused new messages would stop every
service's outbox until old messages aged out, days later; dropping the oldest only costs a
consumer that lags by more than the cap, which the consumer lag alerts and scaling watch.
The settings are the suite's, the same for every service (a consumer also ensures the streams
it reads), and a service applies them to an existing stream on start.
"""

from __future__ import annotations

import asyncio

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StreamConfig
from nats.js.errors import BadRequestError

from oms_platform.events import stream_name, stream_subjects

log = structlog.get_logger(__name__)

DUPLICATE_WINDOW_SECONDS = 120.0
STREAM_MAX_AGE_SECONDS = 7 * 24 * 3600.0
STREAM_MAX_BYTES = 1 << 30


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


async def ensure_stream(
    js: JetStreamContext,
    service: str,
    *,
    max_age_seconds: float = STREAM_MAX_AGE_SECONDS,
    max_bytes: int = STREAM_MAX_BYTES,
) -> None:
    """Creates the stream of one producing service, or brings an existing one to this
    configuration (its messages stay)."""
    config = StreamConfig(
        name=stream_name(service),
        subjects=stream_subjects(service),
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=max_age_seconds,
        max_bytes=max_bytes,
        discard=DiscardPolicy.OLD,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
