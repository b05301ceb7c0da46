"""Rate-shop benchmark: RateShipment calls/s over gRPC for one parcel across 5 carriers x 4
services (20 quotes a call), next to an empty unary gRPC call (a health check) to the same
server in the same run; the goal is a ratio of at least 0.5.

1. Starts the shipping service as its own process (as in production) on a fresh database and
   creates 5 carriers of 4 services each, a rate card per service (3 zones, 7 weight breaks,
   fuel, residential, remote-area and oversize surcharges) and one origin.
2. ``concurrency`` callers on one channel send health checks and rate-shop calls (requests
   serialised once, answers left unparsed: the callers share the machine) in
   alternating rounds (``rounds`` of each, ``seconds`` in all for each kind, after a warm-up
   of each). The machine may be shared: a neighbour's load lands on both kinds alike when
   they alternate, where one long window of each would credit it to whichever ran then. The
   figures are the medians of the rounds' calls/s, the ratio the median of each rate-shop
   round against the empty round before it, and the server process's CPU time per call
   (all its threads; a neighbour's load moves it less than it moves calls/s).

``python -m oms_devtools.bench_shipping`` runs it on its own embedded PostgreSQL and NATS;
``run()`` is what ``make bench`` calls with its servers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.type import timeofday_pb2
from grpc_health.v1 import health_pb2
from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2 as pb
from oms.shipping.v1 import shipping_pb2_grpc

from oms_devtools.servers import (
    EmbeddedNats,
    EmbeddedPostgres,
    drop_database,
    ensure_database,
    free_port,
)
from oms_devtools.stack import ServiceProcess, Stack

CARRIERS = 5
SERVICES = 4
LEVELS = (pb.SERVICE_LEVEL_ECONOMY, pb.SERVICE_LEVEL_STANDARD, pb.SERVICE_LEVEL_EXPRESS,
          pb.SERVICE_LEVEL_NEXT_DAY)
NODE = "bench-uk"


def start_shipping(database_url: str, nats_url: str, state_dir: Path,
                   log_name: str = "shipping-bench") -> ServiceProcess:
    """The shipping service as its own process on a migrated database, once it is ready."""
    env = Stack(state_dir, database_url, nats_url)._env(
        OMS_DATABASE_URL=database_url, OMS_NATS_URL=nats_url, OMS_LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "-m", "oms_shipping", "migrate"], env=env, check=True,
                   capture_output=True)
    port = free_port()
    service = ServiceProcess(
        name="shipping",
        argv=[sys.executable, "-m", "oms_shipping"],
        env={**env, "OMS_GRPC_HOST": "127.0.0.1", "OMS_GRPC_PORT": str(port)},
        log_path=state_dir / "logs" / f"{log_name}.log",
        endpoint=f"127.0.0.1:{port}",
    )
    service.start()
    deadline = time.monotonic() + 60
    while not Stack._ready(service):
        if not service.alive() or time.monotonic() > deadline:
            service.stop()
            raise RuntimeError(f"shipping did not start:\n{service.log_tail()}")
        time.sleep(0.2)
    return service


def gbp(amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code="GBP", amount=amount)


async def _set_up(stub: shipping_pb2_grpc.ShippingServiceStub) -> None:
    for c in range(CARRIERS):
        carrier_id = f"bench_carrier_{c}"
        services = [pb.CarrierService(code=f"{carrier_id}_{s}", service_level=LEVELS[s],
                                      transit_days=SERVICES - s, origin_countries=["GB"],
                                      destination_countries=["GB"])
                    for s in range(SERVICES)]
        await stub.CreateCarrier(pb.CreateCarrierRequest(
            request_id=f"bench-{carrier_id}", carrier=pb.Carrier(
                carrier_id=carrier_id, mode=pb.CARRIER_MODE_TABLE_RATE, services=services)))
        for s, service in enumerate(services):
            zones = [pb.Zone(zone="mainland", origin_country="GB", destination_country="GB"),
                     pb.Zone(zone="ni", origin_country="GB", destination_country="GB",
                             postcode_prefixes=["BT"]),
                     pb.Zone(zone="islands", origin_country="GB", destination_country="GB",
                             postcode_prefixes=["HS", "ZE", "KW15", "KW16", "KW17"])]
            breaks = [pb.WeightBreak(zone=zone.zone, max_weight_grams=grams,
                                     price=gbp(f"{2 + c * 0.3 + s + z * 2 + b * 0.8:.2f}"))
                      for z, zone in enumerate(zones)
                      for b, grams in enumerate((500, 1000, 2000, 5000, 10000, 20000, 30000))]
            await stub.CreateRateCard(pb.CreateRateCardRequest(
                request_id=f"bench-card-{service.code}",
                rate_card_id=service.code.replace("_", "-"), rate_card=pb.RateCard(
                    service_code=service.code, currency_code="GBP", dim_divisor=5000,
                    zones=zones, breaks=breaks, fuel_percent="4.5",
                    residential_surcharge=gbp("0.45"), remote_area_surcharge=gbp("3.50"),
                    remote_postcode_prefixes=["GB:HS", "GB:ZE"], oversize_length_mm=1200,
                    oversize_girth_mm=2500, oversize_surcharge=gbp("15.00"))))
    await stub.CreateOrigin(pb.CreateOriginRequest(origin=pb.Origin(
        node_id=NODE, address=common_pb2.Address(postal_code="CV1 2GT", region_code="GB"),
        time_zone="Europe/London", cutoff_time=timeofday_pb2.TimeOfDay(hours=15))))


SHIPMENT = pb.RateShipmentRequest(shipment=pb.Shipment(
    node_id=NODE, residential=True,
    destination=common_pb2.Address(postal_code="SW1A 1AA", region_code="GB"),
    parcels=[pb.Parcel(weight=common_pb2.Weight(grams=1200),
                       dimensions=common_pb2.Dimensions(length_mm=300, width_mm=250,
                                                        height_mm=150))],
    basket_value=gbp("42.00")))


async def _rate(call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float,
                server: psutil.Process | None = None) -> tuple[float, float]:
    """Calls completed per second by ``concurrency`` callers in ``seconds``, and the server
    process's CPU seconds per call in that time (0 without a process to look at)."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    cpu_before = _cpu_seconds(server)
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return done / elapsed, (_cpu_seconds(server) - cpu_before) / max(done, 1)


def _cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return times.user + times.system


async def measure(endpoint: str, *, concurrency: int, seconds: float, rounds: int = 5,
                  pid: int | None = None) -> dict[str, float]:
    server = psutil.Process(pid) if pid is not None else None
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = shipping_pb2_grpc.ShippingServiceStub(channel)
        await _set_up(stub)
        answer = await stub.RateShipment(SHIPMENT)
        if len(answer.quotes) != CARRIERS * SERVICES:
            raise RuntimeError(f"expected {CARRIERS * SERVICES} quotes, got "
                               f"{len(answer.quotes)}: {list(answer.ineligible)}")
        # The timed calls send bytes serialised once and keep the answers as bytes: the
        # callers share the machine with the server, and building and parsing twenty quotes
        # on their side would be counted against the rate shop.
        empty_call = channel.unary_unary("/grpc.health.v1.Health/Check")
        rate_call = channel.unary_unary("/oms.shipping.v1.ShippingService/RateShipment")
        check = health_pb2.HealthCheckRequest(service="").SerializeToString()
        shipment = SHIPMENT.SerializeToString()
        if health_pb2.HealthCheckResponse.FromString(await empty_call(check)).status != \
                health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError("the shipping service is not serving")

        async def empty() -> None:
            await empty_call(check)

        async def rate_shop() -> None:
            await rate_call(shipment)

        await _rate(empty, concurrency, 1.0)
        await _rate(rate_shop, concurrency, 1.0)
        each = seconds / rounds
        empties, rates = [], []
        for _ in range(rounds):
            empties.append(await _rate(empty, concurrency, each, server))
            rates.append(await _rate(rate_shop, concurrency, each, server))
    return {"empty_per_s": statistics.median(r for r, _ in empties),
            "rate_per_s": statistics.median(r for r, _ in rates),
            "ratio": statistics.median(r / e for (r, _), (e, _) in zip(rates, empties,
                                                                       strict=True)),
            "empty_cpu_us": statistics.median(c for _, c in empties) * 1e6,
            "rate_cpu_us": statistics.median(c for _, c in rates) * 1e6,
            "quotes": len(answer.quotes), "concurrency": concurrency, "seconds": seconds,
            "rounds": rounds}


async def run(database_url: str, nats_url: str, *, concurrency: int = 16, seconds: float = 5.0,
              rounds: int = 5, state_dir: Path | None = None) -> dict[str, float]:
    """Measures on the PostgreSQL server of ``database_url`` (the service's own database is
    created there) and the NATS at ``nats_url``."""
    service_db = "bench_shipping"
    drop_database(database_url, service_db)
    service_url = ensure_database(database_url, service_db)
    with tempfile.TemporaryDirectory(prefix="oms-bench-shipping-") as scratch:
        service = start_shipping(service_url, nats_url, state_dir or Path(scratch))
        try:
            assert service.process is not None
            return await measure(service.endpoint, concurrency=concurrency, seconds=seconds,
                                 rounds=rounds, pid=service.process.pid)
        finally:
            service.stop()


def report(figures: dict[str, float]) -> str:
    return "\n".join([
        f"  rate shop: one parcel, {CARRIERS} carriers x {SERVICES} services "
        f"({figures['quotes']:.0f} quotes a call), {figures['concurrency']:.0f} callers, "
        f"{figures['rounds']:.0f} alternating rounds of each (medians)",
        f"    RateShipment over gRPC         {figures['rate_per_s']:8.1f} calls/s   "
        f"server CPU {figures['rate_cpu_us']:5.0f} us a call",
        f"    empty unary call (health)      {figures['empty_per_s']:8.1f} calls/s   "
        f"server CPU {figures['empty_cpu_us']:5.0f} us a call",
        f"    ratio rate shop / empty call   {figures['ratio']:8.2f}  (goal >= 0.5)",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="seconds of each kind of call, split over the rounds")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oms-bench-shipping-") as scratch:
        root = Path(scratch)
        with EmbeddedPostgres(root / "postgres", durable=True) as postgres, \
                EmbeddedNats(root / "nats") as nats_server:
            figures = asyncio.run(run(postgres.url(), nats_server.url,
                                      concurrency=args.concurrency, seconds=args.seconds,
                                      rounds=args.rounds, state_dir=root))
    print(f"\nOMS rate-shop bench: {psutil.cpu_count()} CPUs")
    print(report(figures))


if __name__ == "__main__":
    main()
