"""Label benchmark: labels bought and label PDFs printed per second over gRPC.

1. Starts the shipping service as its own process (as in production) on a fresh database,
   with one table-rate carrier (one service, UPS 1Z numbers), its rate card and one origin.
2. ``concurrency`` callers buy labels (CreateLabel, a rated purchase with a tracking number
   from the sequence) for ``seconds``; then ``concurrency`` callers ask for those labels'
   4x6 PDFs (GetLabelDocument: read the label, draw it with its Code 128 barcode) for
   ``seconds``, and then for their ZPL. Each phase has a warm-up first.

``python -m oms_devtools.bench_labels`` runs it on its own embedded PostgreSQL and NATS;
``run()`` is what ``make bench`` calls with its servers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.type import dayofweek_pb2
from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2 as pb
from oms.shipping.v1 import shipping_pb2_grpc

from oms_devtools.bench_shipping import gbp, start_shipping
from oms_devtools.servers import (
    EmbeddedNats,
    EmbeddedPostgres,
    drop_database,
    ensure_database,
)

NODE = "bench-labels-uk"
CARRIER = "bench_parcels"
SERVICE = "bench_parcels_standard"
EVERY_DAY = [dayofweek_pb2.MONDAY, dayofweek_pb2.TUESDAY, dayofweek_pb2.WEDNESDAY,
             dayofweek_pb2.THURSDAY, dayofweek_pb2.FRIDAY, dayofweek_pb2.SATURDAY,
             dayofweek_pb2.SUNDAY]


async def _set_up(stub: shipping_pb2_grpc.ShippingServiceStub) -> None:
    await stub.CreateCarrier(pb.CreateCarrierRequest(
        request_id=f"bench-{CARRIER}", carrier=pb.Carrier(
            carrier_id=CARRIER, display_name="Bench Parcels", mode=pb.CARRIER_MODE_TABLE_RATE,
            tracking_scheme=pb.TRACKING_SCHEME_UPS_1Z,
            services=[pb.CarrierService(code=SERVICE, display_name="Bench Standard",
                                        service_level=pb.SERVICE_LEVEL_STANDARD,
                                        transit_days=2, pickup_days=EVERY_DAY)])))
    await stub.CreateRateCard(pb.CreateRateCardRequest(
        request_id=f"bench-card-{SERVICE}", rate_card_id="bench-parcels-standard",
        rate_card=pb.RateCard(
            service_code=SERVICE, currency_code="GBP", fuel_percent="4.5",
            zones=[pb.Zone(zone="1", origin_country="GB", destination_country="GB")],
            breaks=[pb.WeightBreak(zone="1", max_weight_grams=grams, price=gbp(price))
                    for grams, price in ((1000, "3.10"), (5000, "4.90"), (30000, "9.80"))])))
    await stub.CreateOrigin(pb.CreateOriginRequest(origin=pb.Origin(
        node_id=NODE, carriers=[CARRIER], time_zone="Europe/London",
        address=common_pb2.Address(organization="OMS Bench Warehouse",
                                   address_lines=["Unit 4, Brunel Way"], locality="Coventry",
                                   postal_code="CV1 2GT", region_code="GB"))))


def _label_request(index: int) -> pb.CreateLabelRequest:
    return pb.CreateLabelRequest(
        request_id=f"bench-{uuid.uuid4().hex}",
        package=f"fulfilmentOrders/bench-{index}/packages/1", orders=[f"orders/bench-{index}"],
        node_id=NODE, service_code=SERVICE,
        destination=common_pb2.Address(recipient="Ada Lovelace",
                                       address_lines=["10 Downing Street"], locality="London",
                                       postal_code="SW1A 2AA", region_code="GB"),
        parcel=pb.Parcel(weight=common_pb2.Weight(grams=1200)))


async def _rate(call: Callable[[], Awaitable[Any]], concurrency: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def measure(endpoint: str, *, concurrency: int, seconds: float) -> dict[str, float]:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = shipping_pb2_grpc.ShippingServiceStub(channel)
        await _set_up(stub)
        counter = itertools.count()
        names: list[str] = []
        sizes: list[int] = []

        async def buy() -> None:
            label = await stub.CreateLabel(_label_request(next(counter)))
            names.append(label.name)

        def document(fmt: int) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                name = names[next(counter) % len(names)]
                printed = await stub.GetLabelDocument(pb.GetLabelDocumentRequest(
                    name=name, format=fmt))
                sizes.append(len(printed.content))
            return call

        await _rate(buy, concurrency, 1.0)
        bought_per_s = await _rate(buy, concurrency, seconds)
        first = await stub.GetLabelDocument(pb.GetLabelDocumentRequest(name=names[0]))
        if not first.content.startswith(b"%PDF-"):
            raise RuntimeError("GetLabelDocument did not return a PDF")
        await _rate(document(pb.DOCUMENT_FORMAT_PDF), concurrency, 1.0)
        sizes.clear()
        pdf_per_s = await _rate(document(pb.DOCUMENT_FORMAT_PDF), concurrency, seconds)
        pdf_bytes = sum(sizes) / max(1, len(sizes))
        zpl_per_s = await _rate(document(pb.DOCUMENT_FORMAT_ZPL), concurrency, seconds)
    return {"bought_per_s": bought_per_s, "pdf_per_s": pdf_per_s, "zpl_per_s": zpl_per_s,
            "pdf_bytes": pdf_bytes, "labels": len(names), "concurrency": concurrency,
            "seconds": seconds}


async def run(database_url: str, nats_url: str, *, concurrency: int = 8, seconds: float = 5.0,
              state_dir: Path | None = None) -> dict[str, float]:
    """Measures on the PostgreSQL server of ``database_url`` (the service's own database is
    created there) and the NATS at ``nats_url``."""
    service_db = "bench_labels"
    drop_database(database_url, service_db)
    service_url = ensure_database(database_url, service_db)
    with tempfile.TemporaryDirectory(prefix="oms-bench-labels-") as scratch:
        service = start_shipping(service_url, nats_url, state_dir or Path(scratch),
                                 log_name="shipping-bench-labels")
        try:
            return await measure(service.endpoint, concurrency=concurrency, seconds=seconds)
        finally:
            service.stop()


def report(figures: dict[str, float]) -> str:
    return "\n".join([
        f"  labels: one table-rate carrier, {figures['concurrency']:.0f} callers, one "
        "service process",
        f"    CreateLabel over gRPC          {figures['bought_per_s']:8.1f} labels/s "
        f"({figures['labels']:.0f} bought)",
        f"    label PDF (4x6, Code 128)      {figures['pdf_per_s']:8.1f} PDFs/s "
        f"({figures['pdf_bytes'] / 1024:.1f} KiB each)",
        f"    label ZPL                      {figures['zpl_per_s']:8.1f} documents/s",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oms-bench-labels-") as scratch:
        root = Path(scratch)
        with EmbeddedPostgres(root / "postgres", durable=True) as postgres, \
                EmbeddedNats(root / "nats") as nats_server:
            figures = asyncio.run(run(postgres.url(), nats_server.url,
                                      concurrency=args.concurrency, seconds=args.seconds,
                                      state_dir=root))
    print(f"\nOMS label bench: PostgreSQL durable (fsync on); {psutil.cpu_count()} CPUs")
    print(report(figures))


if __name__ == "__main__":
    main()
