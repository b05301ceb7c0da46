"""The demo set of ``make run`` rates every demo order: from each demo node to every country
it serves, at every service level an order can be paid for, at least one quote."""

# The fixtures come from shipping_support; tests take them as arguments of the same name.
# ruff: noqa: F811

from __future__ import annotations

import asyncio

from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2 as pb
from oms_devtools import demo
from oms_platform.service import Service
from shipping_support import (  # noqa: F401 (fixtures)
    Stub,
    database_url,
    service,
    stub,
)

# The levels of oms.orders.v1.ServiceLevel, as shipping numbers them.
ORDER_LEVELS = (pb.SERVICE_LEVEL_STANDARD, pb.SERVICE_LEVEL_EXPEDITED, pb.SERVICE_LEVEL_EXPRESS,
                pb.SERVICE_LEVEL_NEXT_DAY)
POSTCODES = {"US": "10001", "CA": "M5V 2T6", "GB": "SW1A 1AA", "IE": "D02 X285",
             "DE": "10115", "AT": "1010", "CH": "8001", "FR": "75001", "NL": "1012 JS",
             "BE": "1000", "IT": "00184", "ES": "28013"}


async def test_every_demo_node_rates_every_served_country_at_every_level(
        service: Service, stub: Stub) -> None:
    target = f"127.0.0.1:{service.bound_port}"
    await asyncio.to_thread(demo.load_shipping, target)
    await asyncio.to_thread(demo.load_shipping, target)  # loading again changes nothing
    carriers = await stub.ListCarriers(pb.ListCarriersRequest(page_size=100))
    assert sorted(c.carrier_id for c in carriers.carriers) == sorted(
        c[0] for c in demo.CARRIERS)
    unrated = []
    for node_id, *_, serves, _zone, _cost in demo.NODES:
        for country in serves:
            for level in ORDER_LEVELS:
                answer = await stub.RateShipment(pb.RateShipmentRequest(shipment=pb.Shipment(
                    node_id=node_id, service_level=level, residential=True,
                    destination=common_pb2.Address(region_code=country,
                                                   postal_code=POSTCODES[country]),
                    parcels=[pb.Parcel(weight=common_pb2.Weight(grams=900),
                                       dimensions=common_pb2.Dimensions(
                                           length_mm=330, width_mm=220, height_mm=120),
                                       declared_value=common_pb2.Money(
                                           currency_code=demo.CURRENCIES[
                                               node_id_country(node_id)], amount="60.00"))])))
                if not answer.quotes:
                    unrated.append((node_id, country, pb.ServiceLevel.Name(level),
                                    list(answer.ineligible)))
                else:
                    assert answer.merchant_cost == answer.quotes[0].total
    assert unrated == []


def node_id_country(node_id: str) -> str:
    return next(node[5] for node in demo.NODES if node[0] == node_id)
