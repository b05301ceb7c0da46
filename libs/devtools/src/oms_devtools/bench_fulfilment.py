"""Fulfilment benchmark: pick lists generated per second over 10,000 open order lines at one
node, for each strategy; and orders per second from released to shipped (picked, packed with
every unit scanned, labelled by shipping).

1. Starts inventory, shipping and fulfilment as their own processes (as in production) on
   fresh databases, with NATS. Inventory gets a warehouse of 20 aisles x 20 bays x 3 levels
   (1,200 bins in four zones) and a catalogue of 1,000 SKUs (weights 50 g to 1.2 kg), which
   reaches fulfilment as `ProductChanged`; fulfilment gets a bin for every SKU.
2. Picking: releases (`OrderReleased`, as orders publishes them) bring the node to 10,000
   open order lines, 1 to 5 lines an order, one order in ten express. For each strategy in
   turn (single order, batch, zone, wave) ``pickers`` callers ask for pick lists
   (`CreatePickList`) until they have claimed ``claim_lines`` lines or ``seconds`` have
   passed; then the node is topped back up to 10,000 open lines for the next strategy, so
   every strategy draws from at least 10,000 - ``claim_lines`` open lines.
3. End to end: ``orders`` releases to a second warehouse that one table-rate carrier
   collects from. ``pickers`` pickers take batch lists and confirm every stop; ``packers``
   packers start packing each picked order, scan every unit in and seal it, which buys its
   label from shipping. Orders/s is the batch over the time from the first release published
   to the last package shipped; the latency is each order's, release to shipped.

``python -m oms_devtools.bench_fulfilment`` runs it on its own embedded PostgreSQL and NATS;
``run()`` is what ``make bench`` calls with its servers.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import nats
import psutil
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import dayofweek_pb2, latlng_pb2, timeofday_pb2
from nats.js import JetStreamContext
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import fulfilment_pb2 as fpb
from oms.fulfilment.v1 import fulfilment_pb2_grpc
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.inventory.v1 import inventory_pb2 as ipb
from oms.inventory.v1 import inventory_pb2_grpc
from oms.orders.v1 import events_pb2 as order_events
from oms.orders.v1 import orders_pb2
from oms.shipping.v1 import shipping_pb2 as spb
from oms.shipping.v1 import shipping_pb2_grpc
from oms_platform import bus
from oms_platform.events import stream_name, subject_for

from oms_devtools.servers import EmbeddedNats, EmbeddedPostgres, drop_database
from oms_devtools.stack import Stack
from oms_devtools.testkit import caught_up, publish

PICK_NODE = "bench-picks"
SHIP_NODE = "bench-ships"
CARRIER = "bench_fulfilment_post"
# code, level, transit days, prices up to 2, 10 and 30 kg: standard and express orders.
SERVICES_SOLD = [
    (f"{CARRIER}_standard", spb.SERVICE_LEVEL_STANDARD, 2, ("3.40", "5.90", "9.80")),
    (f"{CARRIER}_express", spb.SERVICE_LEVEL_EXPRESS, 1, ("7.90", "11.50", "16.80")),
]
SKUS = 1000
OPEN_LINES = 10_000
AISLES, BAYS, LEVELS = 20, 20, 3
STRATEGIES = {"single order": fpb.PICK_STRATEGY_SINGLE_ORDER,
              "batch": fpb.PICK_STRATEGY_BATCH, "zone": fpb.PICK_STRATEGY_ZONE,
              "wave": fpb.PICK_STRATEGY_WAVE}
SERVICES = ("inventory", "shipping", "fulfilment")
EVERY_DAY = [getattr(dayofweek_pb2, day) for day in (
    "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")]
LAST_SECOND = timeofday_pb2.TimeOfDay(hours=23, minutes=59, seconds=59)
WAREHOUSE = common_pb2.Address(
    organization="OMS Bench Warehouse", address_lines=["Unit 4, Brunel Way"],
    locality="Coventry", postal_code="CV1 2GT", region_code="GB",
    location=latlng_pb2.LatLng(latitude=52.4068, longitude=-1.5197))
ADDRESS = common_pb2.Address(recipient="Ada Lovelace", address_lines=["10 Downing Street"],
                             locality="London", postal_code="SW1A 2AA", region_code="GB")

Fulfilment = fulfilment_pb2_grpc.FulfilmentServiceStub


def sku(index: int) -> str:
    return f"BENCH-{index:04d}"


def bins() -> list[ipb.Bin]:
    """A-01-1 to T-20-3: five aisles a zone; codes walked serpentine (no walk sequence)."""
    letters = [chr(ord("A") + a) for a in range(AISLES)]
    return [ipb.Bin(bin_code=f"{letter}-{bay:02d}-{level}", zone=f"Z{a // 5 + 1}")
            for a, letter in enumerate(letters) for bay in range(1, BAYS + 1)
            for level in range(1, LEVELS + 1)]


# --- set-up, through the services' APIs ----------------------------------------------------

async def set_up(inventory: inventory_pb2_grpc.InventoryServiceStub, fulfilment: Fulfilment,
                 shipping: shipping_pb2_grpc.ShippingServiceStub,
                 js: JetStreamContext) -> None:
    rng = random.Random(7)
    layout = bins()
    for node_id in (PICK_NODE, SHIP_NODE):
        await inventory.CreateFulfilmentNode(ipb.CreateFulfilmentNodeRequest(
            request_id=f"bench-node-{node_id}", fulfilment_node=ipb.FulfilmentNode(
                node_id=node_id, display_name=node_id, type=ipb.NODE_TYPE_WAREHOUSE,
                address=WAREHOUSE, cutoff_time=LAST_SECOND, time_zone="UTC", bins=layout)))
    await inventory.BatchUpsertProducts(ipb.BatchUpsertProductsRequest(products=[
        ipb.Product(sku=sku(i), title=f"Bench product {i}", returnable=True,
                    weight=common_pb2.Weight(grams=rng.randint(50, 1200)),
                    dimensions=common_pb2.Dimensions(length_mm=rng.randint(80, 300),
                                                     width_mm=rng.randint(60, 200),
                                                     height_mm=rng.randint(10, 120)),
                    fragile=rng.random() < 0.1)
        for i in range(SKUS)]))
    for node_id in (PICK_NODE, SHIP_NODE):
        codes = [b.bin_code for b in layout]
        rng.shuffle(codes)
        await fulfilment.BatchSetSlots(fpb.BatchSetSlotsRequest(slots=[
            fpb.Slot(node_id=node_id, sku=sku(i), bin_code=codes[i]) for i in range(SKUS)]))
    await shipping.CreateCarrier(spb.CreateCarrierRequest(
        request_id=f"bench-{CARRIER}", carrier=spb.Carrier(
            carrier_id=CARRIER, display_name="Bench Post", mode=spb.CARRIER_MODE_TABLE_RATE,
            tracking_scheme=spb.TRACKING_SCHEME_S10,
            services=[spb.CarrierService(code=code, display_name=code, service_level=level,
                                         transit_days=days, pickup_days=EVERY_DAY,
                                         cutoff_time=LAST_SECOND)
                      for code, level, days, _ in SERVICES_SOLD])))
    for code, _, _, prices in SERVICES_SOLD:
        await shipping.CreateRateCard(spb.CreateRateCardRequest(
            request_id=f"bench-card-{code}", rate_card_id=code.replace("_", "-"),
            rate_card=spb.RateCard(
                service_code=code, currency_code="GBP",
                zones=[spb.Zone(zone="1", origin_country="GB", destination_country="GB")],
                breaks=[spb.WeightBreak(zone="1", max_weight_grams=grams, price=common_pb2.Money(
                    currency_code="GBP", amount=price))
                        for grams, price in zip((2000, 10000, 30000), prices, strict=True)])))
    await shipping.CreateOrigin(spb.CreateOriginRequest(origin=spb.Origin(
        node_id=SHIP_NODE, carriers=[CARRIER], time_zone="Europe/London",
        cutoff_time=LAST_SECOND, address=WAREHOUSE)))
    # Every product's ProductChanged handled: pick lists and cartons know weights and sizes.
    await _wait_for_catalogue(js)


async def _wait_for_catalogue(js: JetStreamContext, timeout: float = 120.0) -> None:
    stream = stream_name("inventory")
    subject = subject_for(inventory_events.ProductChanged)
    deadline = time.monotonic() + timeout
    while _count(await js.stream_info(stream, subjects_filter=subject), subject) < SKUS:
        if time.monotonic() > deadline:
            raise RuntimeError("inventory did not publish the catalogue")
        await asyncio.sleep(0.2)
    await caught_up(js, "fulfilment", stream, timeout=timeout)


def _count(info: Any, subject: str) -> int:
    return int((info.state.subjects or {}).get(subject, 0))


# --- releases -------------------------------------------------------------------------------

@dataclass
class Releases:
    """Orders released as orders would release them, with when each went out."""

    js: JetStreamContext
    rng: random.Random = field(default_factory=lambda: random.Random(42))
    sent: dict[str, float] = field(default_factory=dict)  # order name -> perf_counter()
    last: Any = None

    def event(self, node_id: str, max_lines: int) -> order_events.OrderReleased:
        order = f"orders/{uuid.uuid4()}"
        express = self.rng.random() < 0.1
        picked = self.rng.sample(range(SKUS), self.rng.randint(1, max_lines))
        return order_events.OrderReleased(
            order=order, orders=[order], node_id=node_id, channel="bench",
            external_order_id=order.removeprefix("orders/")[:12], shipping_address=ADDRESS,
            service_level=(orders_pb2.SERVICE_LEVEL_EXPRESS if express
                           else orders_pb2.SERVICE_LEVEL_STANDARD),
            release_time=_now(),
            lines=[order_events.ReleasedLine(order=order, line_id=str(n), sku=sku(i),
                                             quantity=1 if self.rng.random() < 0.7 else 2)
                   for n, i in enumerate(picked, start=1)])

    async def send(self, node_id: str, *, lines: int = 0, orders: int = 0,
                   max_lines: int = 5) -> int:
        """Releases orders until ``lines`` lines or ``orders`` orders went out; the lines
        sent."""
        sent_lines = sent_orders = 0
        pending: list[asyncio.Future[Any]] = []
        while sent_lines < lines or sent_orders < orders:
            event = self.event(node_id, max_lines)
            self.sent[event.order] = time.perf_counter()
            pending.append(asyncio.ensure_future(publish(self.js, event, partition=node_id)))
            sent_lines += len(event.lines)
            sent_orders += 1
            if len(pending) >= 200:
                self.last = (await asyncio.gather(*pending))[-1]
                pending.clear()
        if pending:
            self.last = (await asyncio.gather(*pending))[-1]
        return sent_lines

    async def handled(self, timeout: float = 300.0) -> None:
        """Fulfilment has made a fulfilment order of every release sent so far."""
        if self.last is not None:
            await caught_up(self.js, "fulfilment", self.last, timeout=timeout)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


# --- pick lists per strategy ------------------------------------------------------------------

def lines_on(pick_list: fpb.PickList) -> int:
    """Order lines the list claimed (a line has one bin, so one stop)."""
    return sum(len(stop.allocations) for stop in pick_list.stops)


async def pick_rate(stub: Fulfilment, strategy: int, *, pickers: int, claim_lines: int,
                    seconds: float) -> dict[str, float]:
    lists: list[fpb.PickList] = []
    calls = 0
    claimed = 0
    deadline = time.perf_counter() + seconds
    due = Timestamp()
    due.FromDatetime(datetime.now(UTC) + timedelta(days=2))

    async def picker() -> None:
        nonlocal calls, claimed
        while claimed < claim_lines and time.perf_counter() < deadline:
            request = fpb.CreatePickListRequest(node_id=PICK_NODE, strategy=strategy)
            if strategy == fpb.PICK_STRATEGY_WAVE:
                request.due_before.CopyFrom(due)
            made = (await stub.CreatePickList(request)).pick_lists
            calls += 1
            lists.extend(made)
            claimed += sum(lines_on(p) for p in made)

    started = time.perf_counter()
    await asyncio.gather(*(picker() for _ in range(pickers)))
    elapsed = time.perf_counter() - started
    return {"calls_per_s": calls / elapsed, "lists_per_s": len(lists) / elapsed,
            "lists": len(lists), "lines_claimed": claimed,
            "orders_per_list": statistics.fmean(len(p.fulfilment_orders) for p in lists),
            "stops_per_list": statistics.fmean(len(p.stops) for p in lists),
            "units_per_list": statistics.fmean(p.units for p in lists),
            "ms_per_call": 1000 * elapsed * pickers / max(1, calls)}


async def measure_picking(stub: Fulfilment, releases: Releases, *, pickers: int,
                          claim_lines: int, seconds: float) -> dict[str, dict[str, float]]:
    started = time.perf_counter()
    open_lines = await releases.send(PICK_NODE, lines=OPEN_LINES)
    await releases.handled()
    intake = len(releases.sent) / (time.perf_counter() - started)
    figures: dict[str, dict[str, float]] = {}
    for name, strategy in STRATEGIES.items():
        result = pick_rate(stub, strategy, pickers=pickers, claim_lines=claim_lines,
                           seconds=seconds)
        figures[name] = {**await result, "open_lines_before": open_lines}
        open_lines -= int(figures[name]["lines_claimed"])
        open_lines += await releases.send(PICK_NODE, lines=OPEN_LINES - open_lines)
        await releases.handled()
    figures["intake"] = {"releases_per_s": intake,
                         "releases": float(len(releases.sent))}
    return figures


# --- released -> shipped ----------------------------------------------------------------------

async def measure_end_to_end(stub: Fulfilment, releases: Releases, *, orders: int,
                             pickers: int, packers: int) -> dict[str, float]:
    picked: asyncio.Queue[str | None] = asyncio.Queue()
    shipped: dict[str, float] = {}
    packages = scans = 0
    claimed = 0

    async def picker() -> None:
        nonlocal claimed
        while claimed < orders:
            made = (await stub.CreatePickList(fpb.CreatePickListRequest(
                node_id=SHIP_NODE, strategy=fpb.PICK_STRATEGY_BATCH))).pick_lists
            if not made:
                await asyncio.sleep(0.05)  # the next releases are on their way
                continue
            for pick_list in made:
                claimed += len(pick_list.fulfilment_orders)
                for stop in pick_list.stops:
                    await stub.ConfirmPick(fpb.ConfirmPickRequest(
                        name=pick_list.name, sequence=stop.sequence,
                        picked_quantity=stop.quantity))
                for name in pick_list.fulfilment_orders:
                    picked.put_nowait(name)

    async def packer() -> None:
        nonlocal packages, scans
        while (name := await picked.get()) is not None:
            started = await stub.StartPacking(fpb.StartPackingRequest(
                fulfilment_order=name, station="bench"))
            for package in started.packages:
                for line in package.lines:
                    for _ in range(line.quantity):
                        scan = await stub.ScanUnit(fpb.ScanUnitRequest(
                            package=package.name, code=line.sku))
                        if not scan.accepted:
                            raise RuntimeError(f"scan of {line.sku} refused: {scan.refusal}")
                        scans += 1
                sealed = await stub.SealPackage(fpb.SealPackageRequest(name=package.name))
                if sealed.status != fpb.PACKAGE_STATUS_SHIPPED:
                    raise RuntimeError(f"{package.name} not shipped: {sealed.hand_off_error}")
                packages += 1
            shipped[started.packages[0].lines[0].order] = time.perf_counter()

    first = time.perf_counter()
    before = set(releases.sent)
    workers = [asyncio.ensure_future(packer()) for _ in range(packers)]
    pickers_done = asyncio.gather(releases.send(SHIP_NODE, orders=orders, max_lines=3),
                                  *(picker() for _ in range(pickers)))
    await pickers_done
    for _ in workers:
        picked.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = max(shipped.values()) - first
    latencies = sorted(shipped[o] - releases.sent[o] for o in shipped if o not in before)
    cuts = statistics.quantiles(latencies, n=100)
    return {"orders": float(len(shipped)), "packages": float(packages), "scans": float(scans),
            "orders_per_s": len(shipped) / elapsed, "seconds": elapsed,
            "p50_s": cuts[49], "p95_s": cuts[94], "pickers": float(pickers),
            "packers": float(packers)}


# --- entry points -------------------------------------------------------------------------------

async def measure(endpoints: dict[str, str], nats_url: str, *, pickers: int, packers: int,
                  claim_lines: int, seconds: float, orders: int) -> dict[str, Any]:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        async with grpc.aio.insecure_channel(endpoints["inventory"]) as inventory, \
                grpc.aio.insecure_channel(endpoints["fulfilment"]) as fulfilment, \
                grpc.aio.insecure_channel(endpoints["shipping"]) as shipping:
            stub = Fulfilment(fulfilment)
            await set_up(inventory_pb2_grpc.InventoryServiceStub(inventory), stub,
                         shipping_pb2_grpc.ShippingServiceStub(shipping), js)
            releases = Releases(js)
            picking = await measure_picking(stub, releases, pickers=pickers,
                                            claim_lines=claim_lines, seconds=seconds)
            end_to_end = await measure_end_to_end(stub, releases, orders=orders,
                                                  pickers=pickers, packers=packers)
    finally:
        await client.close()
    return {"picking": picking, "end_to_end": end_to_end,
            "conditions": {"open_lines": OPEN_LINES, "skus": SKUS,
                           "bins": AISLES * BAYS * LEVELS, "pickers": pickers,
                           "claim_lines": claim_lines, "seconds": seconds}}


async def run(database_url: str, nats_url: str, *, pickers: int = 4, packers: int = 8,
              claim_lines: int = 600, seconds: float = 8.0, orders: int = 100,
              state_dir: Path | None = None) -> dict[str, Any]:
    """Measures on the PostgreSQL server of ``database_url`` (each service's own database,
    ``bench_fulfilment_<service>``, is created there afresh) and the NATS at ``nats_url``."""
    prefix = "bench_fulfilment"
    for service in (*SERVICES, "orders", "gateway"):
        drop_database(database_url, f"{prefix}_{service}")
    client = await nats.connect(nats_url)
    try:
        for producer in ("orders", "inventory", "fulfilment", "shipping"):
            await bus.ensure_stream(client.jetstream(), producer)
    finally:
        await client.close()
    with tempfile.TemporaryDirectory(prefix="oms-bench-fulfilment-") as scratch:
        stack = Stack(state_dir or Path(scratch), database_url, nats_url,
                      database_prefix=prefix, extra_env={"OMS_LOG_LEVEL": "WARNING"})
        await asyncio.to_thread(stack.prepare)
        try:
            for service in SERVICES:
                stack.services[service].start()
            for service in SERVICES:
                await asyncio.to_thread(stack.wait_ready, service)
            return await measure(stack.endpoints(), nats_url, pickers=pickers,
                                 packers=packers, claim_lines=claim_lines, seconds=seconds,
                                 orders=orders)
        finally:
            stack.stop()


def report(figures: dict[str, Any]) -> str:
    conditions = figures["conditions"]
    picking = figures["picking"]
    lines = [f"  pick lists: one node, {conditions['open_lines']:,} open order lines "
             f"({conditions['skus']:,} SKUs in {conditions['bins']:,} bins, 4 zones), "
             f"{conditions['pickers']} pickers asking at once"]
    for name in STRATEGIES:
        f = picking[name]
        lines.append(
            f"    {name:<13} {f['lists_per_s']:7.1f} lists/s  ({f['calls_per_s']:.1f} calls/s,"
            f" {f['ms_per_call']:.0f} ms a call; {f['orders_per_list']:.1f} orders,"
            f" {f['stops_per_list']:.1f} stops, {f['units_per_list']:.1f} units a list;"
            f" {f['lines_claimed']:.0f} lines claimed of {f['open_lines_before']:,.0f})")
    intake = picking["intake"]
    lines.append(f"    releases taken in     {intake['releases_per_s']:7.1f} /s "
                 f"({intake['releases']:.0f} OrderReleased)")
    e = figures["end_to_end"]
    lines += [
        f"  released -> shipped: {e['orders']:.0f} orders ({e['packages']:.0f} packages, "
        f"{e['scans']:.0f} scans), {e['pickers']:.0f} pickers (batch), {e['packers']:.0f} "
        "packers, labels from shipping",
        f"    orders/s                {e['orders_per_s']:7.1f}  ({e['seconds']:.1f} s)",
        f"    release to shipped      p50 {e['p50_s']:.2f} s, p95 {e['p95_s']:.2f} s",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pickers", type=int, default=4)
    parser.add_argument("--packers", type=int, default=8)
    parser.add_argument("--claim-lines", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--orders", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="oms-bench-fulfilment-") as scratch:
        root = Path(scratch)
        with EmbeddedPostgres(root / "postgres", durable=True) as postgres, \
                EmbeddedNats(root / "nats") as nats_server:
            figures = asyncio.run(run(
                postgres.url(), nats_server.url, pickers=args.pickers, packers=args.packers,
                claim_lines=args.claim_lines, seconds=args.seconds, orders=args.orders,
                state_dir=root))
    print(f"\nOMS fulfilment bench: PostgreSQL durable (fsync on); {psutil.cpu_count()} CPUs")
    print(report(figures))


if __name__ == "__main__":
    main()
