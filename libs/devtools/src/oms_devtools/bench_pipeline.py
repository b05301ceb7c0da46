"""The load generator of ``make bench``: paid orders posted to the gateway and followed until
they are released to their warehouse.

It keeps its own cost out of what it measures: every request body is encoded before the
clock starts, and a release is recognised by its subject (``oms.orders.order_released.<node>``)
and the order name in its ``ce-subject`` header, so no event is decoded on this side.

- ``closed_loop``: ``concurrency`` posts in flight at all times (capacity, at saturation);
- ``open_loop``: posts at a fixed arrival rate whatever the replies do (latency of a steady
  day), with the time series of what was posted and released each second;
- ``burst``: ``buyers`` posts for one SKU all at once (the gateway under a hot-SKU attack).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import nats
from google.type import latlng_pb2
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc

from oms_devtools.bench_stats import percentile
from oms_devtools.stack import Stack

RELEASED = "oms.orders.order_released.>"
MAX_IN_FLIGHT = 1024  # the open loop's bound on posts awaiting a reply


async def stock(target: str, units: int, skus: int = 20) -> list[str]:
    """Two warehouses (Reno, Edison) holding ``units`` of each of ``skus`` new SKUs."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        nodes = []
        for city, lat, lng in (("reno", 39.53, -119.81), ("edison", 40.52, -74.41)):
            node_id = f"{city}-{secrets.token_hex(3)}"
            nodes.append(node_id)
            await stub.CreateFulfilmentNode(inventory_pb2.CreateFulfilmentNodeRequest(
                fulfilment_node=inventory_pb2.FulfilmentNode(
                    node_id=node_id, display_name=city, type=inventory_pb2.NODE_TYPE_WAREHOUSE,
                    address=common_pb2.Address(
                        recipient=city, address_lines=["1 Dock Rd"], locality=city,
                        postal_code="00000", region_code="US",
                        location=latlng_pb2.LatLng(latitude=lat, longitude=lng)))))
        names = [f"BENCH-{i:02d}-{secrets.token_hex(3).upper()}" for i in range(skus)]
        for sku in names:
            await stub.CreateProduct(inventory_pb2.CreateProductRequest(
                product=inventory_pb2.Product(sku=sku, title=sku)))
            for node_id in nodes:
                await stub.AdjustStock(inventory_pb2.AdjustStockRequest(
                    node_id=node_id, sku=sku, delta=units,
                    reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT))
        return names


def order_body(sku: str) -> bytes:
    """One paid one-line order as a sales channel posts it, already encoded."""
    return json.dumps({
        "channel": "bench",
        "externalOrderId": uuid.uuid4().hex,
        "customer": {"displayName": "Bench Customer"},
        "shippingAddress": {"recipient": "Bench Customer", "addressLines": ["1 Main St"],
                            "locality": "Los Angeles", "administrativeArea": "CA",
                            "postalCode": "90012", "regionCode": "US"},
        "lines": [{"sku": sku, "quantity": 1,
                   "unitPrice": {"currencyCode": "USD", "amount": "12.50"}}],
        "serviceLevel": "SERVICE_LEVEL_STANDARD",
        "paymentStatus": "PAYMENT_STATUS_PAID",
    }).encode()


@dataclass
class Run:
    """What one load run saw, in ``time.perf_counter()`` seconds."""

    started: float
    posted_at: dict[str, float] = field(default_factory=dict)  # order name -> post sent
    accepted_at: list[float] = field(default_factory=list)  # 201 received
    released_at: dict[str, float] = field(default_factory=dict)
    refused: int = 0  # orders never accepted
    statuses: dict[int, int] = field(default_factory=dict)  # every reply but 201, by status
    retries: int = 0

    def latencies(self) -> list[float]:
        return [self.released_at[n] - t for n, t in self.posted_at.items()
                if n in self.released_at]

    def figures(self) -> dict[str, float]:
        latencies = self.latencies()
        orders = len(self.posted_at)
        last_release = max(self.released_at.values(), default=self.started)
        return {
            "orders": orders,
            "accepted_per_s": len(self.accepted_at) / (max(self.accepted_at) - self.started)
            if self.accepted_at else 0.0,
            "released_per_s": len(self.released_at) / (last_release - self.started)
            if self.released_at else 0.0,
            "p50_ms": percentile(latencies, 50) * 1000 if latencies else 0.0,
            "p95_ms": percentile(latencies, 95) * 1000 if latencies else 0.0,
            "p99_ms": percentile(latencies, 99) * 1000 if latencies else 0.0,
            "refused": self.refused,
            "retries": self.retries,
            "statuses": dict(self.statuses),
        }

    def series(self) -> list[dict[str, float | None]]:
        """Per second since the start: orders posted, orders released, and the p50/p99 of
        the latencies of the orders released in that second (None in a second without a
        release)."""
        seconds = int(max([*self.released_at.values(), *self.posted_at.values(),
                           self.started]) - self.started) + 1
        posted = [0] * seconds
        released = [0] * seconds
        buckets: list[list[float]] = [[] for _ in range(seconds)]
        for name, at in self.posted_at.items():
            posted[int(at - self.started)] += 1
            if name in self.released_at:
                second = int(self.released_at[name] - self.started)
                released[second] += 1
                buckets[second].append(self.released_at[name] - at)
        return [{"second": s, "posted": posted[s], "released": released[s],
                 "p50_ms": percentile(b, 50) * 1000 if b else None,
                 "p99_ms": percentile(b, 99) * 1000 if b else None}
                for s, b in enumerate(buckets)]


class Releases:
    """Release times by order name, from the release events' headers alone."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._waiting: set[str] = set()
        self._all = asyncio.Event()
        self._nc: Any = None

    async def start(self, nats_url: str) -> None:
        self._nc = await nats.connect(nats_url)
        await self._nc.subscribe(RELEASED, cb=self._on_release)

    async def _on_release(self, msg: Any) -> None:
        name = (msg.headers or {}).get("ce-subject", "")
        self.at.setdefault(name, time.perf_counter())
        self._waiting.discard(name)
        if not self._waiting:
            self._all.set()

    async def wait_for(self, names: set[str], timeout: float) -> None:
        self._waiting = names - self.at.keys()
        self._all.clear()
        if self._waiting:
            await asyncio.wait_for(self._all.wait(), timeout)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()


def _client(stack: Stack, key: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=stack.services["gateway"].endpoint, timeout=120, limits=limits,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


RETRIES = 5  # a buyer's attempts after a 429 or 503, as the gateway's clients are told to


def _retry_after(value: str) -> float:
    """The seconds a 429 or 503 asks for (1 when it names none), at most 5."""
    try:
        return min(max(float(value), 0.0), 5.0)
    except ValueError:
        return 1.0


async def _post(client: httpx.AsyncClient, body: bytes, run: Run) -> None:
    """One order, retried with its Idempotency-Key after ``Retry-After`` on 429 and 503 as a
    well-behaved client does; latency runs from the first attempt."""
    sent = time.perf_counter()
    key = uuid.uuid4().hex
    for attempt in range(RETRIES + 1):
        reply = await client.post("/v1/orders", content=body,
                                  headers={"Idempotency-Key": key})
        if reply.status_code == 201:
            run.posted_at[reply.json()["name"]] = sent
            run.accepted_at.append(time.perf_counter())
            return
        run.statuses[reply.status_code] = run.statuses.get(reply.status_code, 0) + 1
        if reply.status_code not in (429, 503) or attempt == RETRIES:
            break
        run.retries += 1
        await asyncio.sleep(_retry_after(reply.headers.get("Retry-After", "")))
    run.refused += 1


async def closed_loop(stack: Stack, nats_url: str, key: str, skus: list[str], orders: int,
                      concurrency: int) -> Run:
    bodies = [order_body(skus[i % len(skus)]) for i in range(orders)]
    releases = Releases()
    await releases.start(nats_url)
    try:
        async with _client(stack, key, concurrency) as client:
            queue = iter(bodies)

            async def worker() -> None:
                for body in queue:
                    await _post(client, body, run)

            run = Run(started=time.perf_counter())
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            await releases.wait_for(set(run.posted_at), timeout=300)
    finally:
        await releases.close()
    run.released_at = {n: releases.at[n] for n in run.posted_at if n in releases.at}
    return run


async def open_loop(stack: Stack, nats_url: str, key: str, skus: list[str], rate: float,
                    seconds: float) -> Run:
    """Posts at ``rate`` orders/s for ``seconds``: post i leaves at start + i / rate, whether
    or not the earlier ones were answered (at most ``MAX_IN_FLIGHT`` awaiting a reply)."""
    count = max(int(rate * seconds), 1)
    bodies = [order_body(skus[i % len(skus)]) for i in range(count)]
    releases = Releases()
    await releases.start(nats_url)
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    try:
        async with _client(stack, key, 256) as client:

            async def send(body: bytes) -> None:
                async with slots:
                    await _post(client, body, run)

            run = Run(started=time.perf_counter())
            tasks = []
            for i, body in enumerate(bodies):
                delay = run.started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(body)))
            await asyncio.gather(*tasks)
            await releases.wait_for(set(run.posted_at), timeout=300)
    finally:
        await releases.close()
    run.released_at = {n: releases.at[n] for n in run.posted_at if n in releases.at}
    return run


async def burst(stack: Stack, nats_url: str, key: str, sku: str, buyers: int) -> Run:
    """``buyers`` one-unit orders for ``sku``, all posted at once, each on its own
    connection: the gateway's accepted orders/s when everyone wants the same item. Waits for
    their releases too, so that the next figure starts on a quiet pipeline."""
    bodies = [order_body(sku) for _ in range(buyers)]
    releases = Releases()
    await releases.start(nats_url)
    try:
        async with _client(stack, key, buyers) as client:
            run = Run(started=time.perf_counter())
            await asyncio.gather(*(_post(client, body, run) for body in bodies))
        await releases.wait_for(set(run.posted_at), timeout=300)
    finally:
        await releases.close()
    run.released_at = {n: releases.at[n] for n in run.posted_at if n in releases.at}
    return run
