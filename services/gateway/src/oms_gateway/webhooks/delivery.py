"""The delivery workers: every replica claims due deliveries from the queue (SKIP LOCKED,
under a lease longer than an attempt can take), POSTs each signed per Standard Webhooks,
logs the attempt and moves the delivery on — taken on a 2xx, else due again after a
doubling wait until its attempts are spent. Redirects are not followed (the endpoint is
the URL the partner gave). A replica that stops mid-attempt leaves its leases to lapse, and
the deliveries go out from whichever replica claims them next: none is lost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from oms_gateway.webhooks import store
from oms_gateway.webhooks.domain import retry_delay
from oms_gateway.webhooks.signing import signed_headers

log = structlog.get_logger(__name__)

USER_AGENT = "oms-gateway-webhooks/1"


@dataclass(frozen=True)
class Policy:
    max_attempts: int
    base: timedelta
    cap: timedelta
    timeout: float
    concurrency: int
    poll_interval: float

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout + 30)


class Deliverer:
    def __init__(self, engine: AsyncEngine, policy: Policy, wake: asyncio.Event) -> None:
        self._engine = engine
        self._policy = policy
        self._wake = wake
        self._client = httpx.AsyncClient(timeout=policy.timeout, follow_redirects=False,
                                         headers={"User-Agent": USER_AGENT})

    async def run(self) -> None:
        """Keeps up to ``concurrency`` attempts in flight: a slow endpoint holds one slot, not
        the others' deliveries."""
        sending: set[asyncio.Task[None]] = set()
        try:
            while True:
                self._wake.clear()
                free = self._policy.concurrency - len(sending)
                claimed: list[store.Due] = []
                if free > 0:
                    try:
                        claimed = await store.claim_due(self._engine, free, self._policy.lease)
                    except Exception:
                        log.exception("claiming due webhook deliveries failed; retried soon")
                for due in claimed:
                    task = asyncio.create_task(self._guarded(due))
                    sending.add(task)
                    task.add_done_callback(sending.discard)
                if claimed and len(claimed) == free:
                    continue  # more may be due
                # Until deliveries are queued here, a slot frees, or the poll interval ends.
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({woken, *sending}, timeout=self._policy.poll_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
        finally:
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
            await self._client.aclose()

    async def _guarded(self, due: store.Due) -> None:
        try:
            await self._attempt(due)
        except Exception:
            # Not recorded (the database went away): the lease lapses and the delivery goes
            # out again, with the same webhook-id, which receivers deduplicate on.
            log.exception("webhook attempt not recorded", delivery_id=str(due.id))

    async def _attempt(self, due: store.Due) -> None:
        headers = {"Content-Type": "application/json",
                   **signed_headers(due.secret, due.message_id, due.payload)}
        started = time.perf_counter()
        status, error = 0, ""
        try:
            reply = await self._client.post(due.url, content=due.payload, headers=headers)
            status = reply.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:500]
        succeeded = not error
        attempts = due.attempts + 1
        retry_in = (None if succeeded or attempts >= self._policy.max_attempts
                    else retry_delay(attempts, self._policy.base, self._policy.cap))
        await store.record_attempt(
            self._engine, due, status_code=status, error=error,
            duration_ms=round((time.perf_counter() - started) * 1000), succeeded=succeeded,
            retry_in=retry_in)
        if not succeeded:
            log.info("webhook attempt failed", delivery_id=str(due.id), attempt=attempts,
                     error=error, retry_in_s=retry_in.total_seconds() if retry_in else None)
