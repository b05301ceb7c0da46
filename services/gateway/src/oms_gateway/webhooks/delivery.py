"""The delivery workers: every replica claims due deliveries from the queue (SKIP LOCKED,
under a lease longer than an attempt can take), POSTs each signed per Standard Webhooks,
logs the attempt and moves the delivery on — taken on a 2xx, else due again after a
doubling wait until its attempts are spent. Redirects are not followed (the endpoint is
the URL the partner gave). A replica that stops mid-attempt leaves its leases to lapse, and
the deliveries go out from whichever replica claims them next: none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        try:
            while True:
                try:
                    sent = await self.deliver_due()
                except Exception:
                    log.exception("webhook delivery pass failed; retried next interval")
                    sent = 0
                if sent < self._policy.concurrency:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._policy.poll_interval)
        finally:
            await self._client.aclose()

    async def deliver_due(self) -> int:
        """One pass: claims up to ``concurrency`` due deliveries and sends them at once."""
        due = await store.claim_due(self._engine, self._policy.concurrency, self._policy.lease)
        await asyncio.gather(*(self._attempt(d) for d in due))
        return len(due)

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
