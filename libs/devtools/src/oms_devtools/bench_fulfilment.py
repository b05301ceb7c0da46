"""Packing-bench micro-benchmark: boxes chosen per second for 10-unit orders, and packing
slips rendered per second, on one core, without a server.

Orders are drawn from a fixed seed (so runs compare): 10 units over 1 to 5 lines, sides of
20 to 200 mm, 50 to 1,500 g, one line in five fragile, against five standard boxes from
3 L to 60 L. The clock covers ``cartonise`` alone (and ``packing_slips_pdf`` alone).

The fulfilment service is imported inside ``run``: this library otherwise imports no
service, and only the workspace's full install (``uv sync --all-packages``) has it.

``python -m oms_devtools.bench_fulfilment [--orders N]`` prints the figures.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from typing import Any


def _orders(count: int, seed: int = 10) -> list[list[Any]]:
    from oms_fulfilment.packing.domain import PackLine

    rng = random.Random(seed)
    orders = []
    for n in range(count):
        line_count = rng.randint(1, 5)
        quantities = [1] * line_count
        for _ in range(10 - line_count):
            quantities[rng.randrange(line_count)] += 1
        orders.append([
            PackLine(f"orders/{n}", str(i), f"SKU-{i}", quantity, rng.randint(20, 200),
                     rng.randint(20, 200), rng.randint(20, 120), rng.randint(50, 1_500),
                     fragile=rng.random() < 0.2)
            for i, quantity in enumerate(quantities)])
    return orders


def run(orders: int = 2_000, slips: int = 200) -> dict[str, float]:
    from decimal import Decimal

    from oms_fulfilment.documents.domain import (
        Address,
        PackingSlip,
        SlipLine,
        packing_slips_pdf,
    )
    from oms_fulfilment.packing.domain import Box, NoBoxFits, cartonise
    from oms_platform.money import Money

    boxes = [Box("XS", 200, 150, 100, 150, 5_000), Box("S", 300, 200, 150, 250, 10_000),
             Box("M", 400, 300, 200, 400, 20_000), Box("L", 500, 400, 300, 600, 25_000),
             Box("XL", 600, 500, 200, 800, 30_000)]
    work = _orders(orders)
    parcels: Counter[int] = Counter()
    unfit = 0
    started = time.perf_counter()
    for lines in work:
        try:
            parcels[len(cartonise(lines, boxes))] += 1
        except NoBoxFits:
            unfit += 1
    cartonise_s = time.perf_counter() - started

    price = Money.of("EUR", Decimal("12.50"))
    slip = PackingSlip("web", "1001", "fulfilmentOrders/1/packages/1",
                       Address("A. Buyer", ("1 High Street",), "London", "N1 9GU", "GB"),
                       tuple(SlipLine(f"SKU-{i}", f"Item {i}", 1 + i % 3, price)
                             for i in range(8)))
    started = time.perf_counter()
    packing_slips_pdf([slip] * slips)
    slips_s = time.perf_counter() - started
    return {
        "orders": orders, "orders_per_s": orders / cartonise_s,
        "ms_per_order": 1_000 * cartonise_s / orders,
        "one_parcel": parcels[1], "several_parcels": sum(parcels.values()) - parcels[1],
        "unfit": unfit, "slips": slips, "slips_per_s": slips / slips_s,
    }


def report(figures: dict[str, float]) -> str:
    return (
        f"cartonisation: {figures['orders_per_s']:,.0f} ten-unit orders/s "
        f"({figures['ms_per_order']:.2f} ms each; {figures['one_parcel']:.0f} in one parcel, "
        f"{figures['several_parcels']:.0f} in several, {figures['unfit']:.0f} unfit, "
        f"of {figures['orders']:.0f})\n"
        f"packing slips: {figures['slips_per_s']:,.0f} pages/s "
        f"(one PDF of {figures['slips']:.0f} slips)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=2_000)
    parser.add_argument("--slips", type=int, default=200)
    args = parser.parse_args()
    print(report(run(args.orders, args.slips)))


if __name__ == "__main__":
    main()
