"""Carriers, origins, rate cards, shipping rules and the rate shop over real gRPC and
PostgreSQL (and NATS, which the service runtime connects to)."""

# The fixtures come from shipping_support; tests take them as arguments of the same name.
# ruff: noqa: F811

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import date_pb2, timeofday_pb2
from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2
from oms_devtools.testkit import new_id
from shipping_support import (  # noqa: F401 (fixtures)
    Stub,
    database_url,
    refused,
    service,
    stub,
)

pb = shipping_pb2


def gbp(amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code="GBP", amount=amount)


def when(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def service_of(code: str, level: int, transit_days: int) -> pb.CarrierService:
    return pb.CarrierService(code=code, display_name=code, service_level=level,
                             transit_days=transit_days, origin_countries=["GB"],
                             destination_countries=["GB"])


async def add_carrier(stub: Stub, carrier_id: str, *services: pb.CarrierService) -> pb.Carrier:
    return await stub.CreateCarrier(pb.CreateCarrierRequest(
        request_id=new_id("carrier"),
        carrier=pb.Carrier(carrier_id=carrier_id, display_name=carrier_id,
                           mode=pb.CARRIER_MODE_TABLE_RATE, services=list(services))))


def uk_card(service_code: str, light: str, heavy: str) -> pb.RateCard:
    return pb.RateCard(
        service_code=service_code, currency_code="GBP", dim_divisor=5000,
        zones=[pb.Zone(zone="1", origin_country="GB", destination_country="GB"),
               pb.Zone(zone="2", origin_country="GB", destination_country="GB",
                       postcode_prefixes=["BT", "HS"])],
        breaks=[pb.WeightBreak(zone="1", max_weight_grams=2000, price=gbp(light)),
                pb.WeightBreak(zone="1", max_weight_grams=10000, price=gbp(heavy)),
                pb.WeightBreak(zone="2", max_weight_grams=10000, price=gbp("15.00"))],
        fuel_percent="10", residential_surcharge=gbp("0.50"))


async def add_card(stub: Stub, card: pb.RateCard) -> pb.RateCard:
    return await stub.CreateRateCard(pb.CreateRateCardRequest(
        request_id=new_id("card"), rate_card_id=new_id("card").lower().replace("_", "-"),
        rate_card=card))


async def add_origin(stub: Stub, node_id: str, carriers: list[str]) -> pb.Origin:
    return await stub.CreateOrigin(pb.CreateOriginRequest(origin=pb.Origin(
        node_id=node_id,
        address=common_pb2.Address(locality="Manchester", postal_code="M1 1AA",
                                   region_code="GB"),
        time_zone="Europe/London", cutoff_time=timeofday_pb2.TimeOfDay(hours=15),
        carriers=carriers)))


def ids(prefix: str) -> str:
    return new_id(prefix).lower().replace("-", "_")


async def test_rate_shop_returns_every_eligible_quote_with_its_breakdown_and_the_choice(
        stub: Stub) -> None:
    rm, evri, other = ids("rm"), ids("evri"), ids("other")
    await add_carrier(stub, rm, service_of(f"{rm}_48", pb.SERVICE_LEVEL_STANDARD, 2),
                      service_of(f"{rm}_24", pb.SERVICE_LEVEL_NEXT_DAY, 1))
    await add_carrier(stub, evri, service_of(f"{evri}_std", pb.SERVICE_LEVEL_STANDARD, 3))
    await add_carrier(stub, other, service_of(f"{other}_std", pb.SERVICE_LEVEL_STANDARD, 1))
    await add_card(stub, uk_card(f"{rm}_48", "3.00", "6.00"))
    await add_card(stub, uk_card(f"{rm}_24", "4.50", "8.00"))
    await add_card(stub, uk_card(f"{evri}_std", "2.60", "5.00"))
    await add_card(stub, uk_card(f"{other}_std", "1.00", "1.00"))
    node = new_id("uk-node").lower()
    await add_origin(stub, node, [rm, evri])  # `other` does not collect there

    # Ready Tuesday 10 March 2026 at 16:00 London, past the 15:00 cut-off: ships Wednesday 11.
    # The promise is Friday 13 March: Evri (3 days, Monday 16) misses it.
    shipment = pb.Shipment(
        node_id=node, residential=True,
        destination=common_pb2.Address(postal_code="SW1A 1AA", region_code="GB"),
        parcels=[pb.Parcel(weight=common_pb2.Weight(grams=1500),
                           dimensions=common_pb2.Dimensions(length_mm=300, width_mm=200,
                                                            height_mm=100))],
        ready_time=when(datetime(2026, 3, 10, 16, 0, tzinfo=UTC)),
        promise_time=when(datetime(2026, 3, 13, 20, 0, tzinfo=UTC)))
    answer = await stub.RateShipment(pb.RateShipmentRequest(shipment=shipment))

    quotes = {q.service_code: q for q in answer.quotes if q.carrier in (rm, evri)}
    assert [q.service_code for q in answer.quotes] == [f"{rm}_48", f"{rm}_24", f"{evri}_std"]
    chosen = answer.quotes[0]
    # 1,500 g actual beats 30x20x10 cm / 5,000 = 1,200 g; <= 2 kg: 3.00, fuel 0.30,
    # residential 0.50.
    assert chosen.billed_weight_grams == 1500
    assert [(c.kind, c.amount.amount) for c in chosen.charges] == [
        ("base", "3.00"), ("fuel", "0.30"), ("residential", "0.50")]
    assert chosen.total == gbp("3.80")
    assert chosen.ship_date == date_pb2.Date(year=2026, month=3, day=11)
    assert chosen.estimated_delivery_date == date_pb2.Date(year=2026, month=3, day=13)
    assert chosen.meets_promise and chosen.lost_reason == ""
    assert quotes[f"{rm}_24"].lost_reason == "costs 1.65 GBP more"  # 5.45 - 3.80
    assert quotes[f"{evri}_std"].meets_promise is False
    assert quotes[f"{evri}_std"].lost_reason == "misses the promise (arrives 2026-03-16)"
    assert f"{other}_std: carrier {other} does not collect at {node}" in answer.ineligible
    assert answer.customer_price == answer.merchant_cost == gbp("3.80")

    # A merchant's rule: free standard shipping over 50.00 GBP.
    rule = await stub.CreateShippingRule(pb.CreateShippingRuleRequest(
        request_id=new_id("rule"), rule=pb.ShippingRule(
            display_name="Free over 50", priority=-1000, destination_countries=["GB"],
            service_levels=[pb.SERVICE_LEVEL_STANDARD], min_basket_value=gbp("50.00"),
            free=True)))
    try:
        shipment.basket_value.CopyFrom(gbp("64.00"))
        free = await stub.RateShipment(pb.RateShipmentRequest(
            shipment=shipment, goal=pb.RATING_GOAL_FASTEST))
        assert free.quotes[0].service_code == f"{rm}_24"  # fastest: next day
        # The rule is for standard; the fastest is next day, so the customer pays its price.
        assert free.applied_rule == "" and free.customer_price == gbp("5.45")
        shipment.service_level = pb.SERVICE_LEVEL_STANDARD
        free = await stub.RateShipment(pb.RateShipmentRequest(shipment=shipment))
        assert free.applied_rule == rule.name
        assert free.customer_price == gbp("0.00") and free.merchant_cost == gbp("3.80")
    finally:
        await stub.DeleteShippingRule(pb.DeleteShippingRuleRequest(name=rule.name))


async def test_a_changed_card_is_rated_on_the_next_call(stub: Stub) -> None:
    carrier = ids("dpd")
    await add_carrier(stub, carrier, service_of(f"{carrier}_std", pb.SERVICE_LEVEL_STANDARD, 1))
    card = await add_card(stub, uk_card(f"{carrier}_std", "4.00", "6.00"))
    node = new_id("uk-node").lower()
    await add_origin(stub, node, [carrier])
    request = pb.RateShipmentRequest(shipment=pb.Shipment(
        node_id=node, destination=common_pb2.Address(postal_code="HS1 2AB", region_code="GB"),
        parcels=[pb.Parcel(weight=common_pb2.Weight(grams=500))]))
    assert (await stub.RateShipment(request)).quotes[0].total == gbp("16.50")  # zone 2
    await stub.DeleteRateCard(pb.DeleteRateCardRequest(name=card.name))
    after = await stub.RateShipment(request)
    assert [q.service_code for q in after.quotes] == []
    assert f"{carrier}_std: no rate card" in after.ineligible


async def test_a_rate_card_round_trips_through_csv_and_a_bad_file_stores_nothing(
        stub: Stub) -> None:
    carrier = ids("yodel")
    await add_carrier(stub, carrier, service_of(f"{carrier}_48", pb.SERVICE_LEVEL_STANDARD, 2))
    card = await add_card(stub, uk_card(f"{carrier}_48", "2.99", "4.99"))
    exported = (await stub.ExportRateCard(pb.ExportRateCardRequest(name=card.name))).csv
    text = exported.decode()
    assert text.splitlines()[0] == ("record,name,value,zone,origin_country,destination_country,"
                                    "postcode_prefixes,max_weight_grams,price")
    assert "break,,,1,,,,2000,2.99" in text.splitlines()

    copy_id = new_id("copy").lower().replace("_", "-")
    imported = await stub.ImportRateCard(pb.ImportRateCardRequest(rate_card_id=copy_id,
                                                                  csv=exported))
    expected = pb.RateCard()
    expected.CopyFrom(card)
    expected.name = f"rateCards/{copy_id}"
    expected.ClearField("create_time")
    imported.ClearField("create_time")
    assert imported == expected

    lines = text.splitlines()
    price_line = next(i for i, line in enumerate(lines, 1) if line.endswith(",2000,2.99"))
    lines[price_line - 1] = lines[price_line - 1].replace("2.99", "2.9x")
    lines.append("break,,,9,,,,1000,1.00")  # no zone 9
    lines.append("zone,,,3,GB,XX,,,")  # no such country
    bad = ("\n".join(lines) + "\n").encode()
    last = len(lines)
    for target in (copy_id, new_id("fresh").lower().replace("_", "-")):
        code, violations = await refused(stub.ImportRateCard(pb.ImportRateCardRequest(
            rate_card_id=target, csv=bad)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert [field for field, _ in violations] == [
            f"csv[{price_line}].price", f"csv[{last}].destination_country",
            f"csv[{last - 1}].zone"]
        assert violations[0][1].startswith(f"line {price_line}, column price: ")
    # The copy is as it was, and the fresh id was never stored.
    unchanged = await stub.GetRateCard(pb.GetRateCardRequest(name=f"rateCards/{copy_id}"))
    assert unchanged.breaks[0].price == gbp("2.99")
    code, _ = await refused(stub.GetRateCard(pb.GetRateCardRequest(name=f"rateCards/{target}")))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_a_retried_create_returns_the_first(stub: Stub) -> None:
    carrier_id = ids("fedex")
    request = pb.CreateCarrierRequest(request_id=new_id("retry"), carrier=pb.Carrier(
        carrier_id=carrier_id, services=[service_of(f"{carrier_id}_ground",
                                                    pb.SERVICE_LEVEL_STANDARD, 3)]))
    first = await stub.CreateCarrier(request)
    again = await stub.CreateCarrier(request)
    assert again == first
    code, _ = await refused(stub.CreateCarrier(pb.CreateCarrierRequest(
        request_id=new_id("other"), carrier=request.carrier)))
    assert code == grpc.StatusCode.ALREADY_EXISTS

    card_request = pb.CreateRateCardRequest(
        request_id=new_id("retry"), rate_card_id=new_id("c").lower().replace("_", "-"),
        rate_card=uk_card(f"{carrier_id}_ground", "5.00", "7.00"))
    assert await stub.CreateRateCard(card_request) == await stub.CreateRateCard(card_request)
    rule_request = pb.CreateShippingRuleRequest(request_id=new_id("retry"), rule=pb.ShippingRule(
        priority=5000, flat_price=gbp("4.95")))
    rule = await stub.CreateShippingRule(rule_request)
    try:
        assert await stub.CreateShippingRule(rule_request) == rule
        listed = [r.name for r in (await stub.ListShippingRules(
            pb.ListShippingRulesRequest(page_size=500))).rules]
        assert listed.count(rule.name) == 1
    finally:
        await stub.DeleteShippingRule(pb.DeleteShippingRuleRequest(name=rule.name))


async def test_bad_input_names_every_field_and_changes_nothing(stub: Stub) -> None:
    carrier_id = ids("bad")
    code, violations = await refused(stub.CreateCarrier(pb.CreateCarrierRequest(
        request_id=new_id("bad"), carrier=pb.Carrier(
            carrier_id=carrier_id, mode=pb.CARRIER_MODE_KARRIO,
            tracking_url_template="https://example.test/track",
            services=[pb.CarrierService(code="Not A Code", transit_days=-1,
                                        destination_countries=["XX"],
                                        cutoff_time=timeofday_pb2.TimeOfDay(hours=25))]))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(field for field, _ in violations) == sorted([
        "carrier.services[0].cutoff_time", "carrier.karrio_carrier",
        "carrier.tracking_url_template", "carrier.services[0].code",
        "carrier.services[0].service_level", "carrier.services[0].transit_days",
        "carrier.services[0].destination_countries[0]"])
    code, _ = await refused(stub.GetCarrier(pb.GetCarrierRequest(name=f"carriers/{carrier_id}")))
    assert code == grpc.StatusCode.NOT_FOUND

    code, violations = await refused(stub.RateShipment(pb.RateShipmentRequest(
        goal=99, shipment=pb.Shipment(
            node_id="nowhere", destination=common_pb2.Address(region_code="ZZ"),
            parcels=[pb.Parcel(weight=common_pb2.Weight(grams=0))]))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(field for field, _ in violations) == [
        "goal", "shipment.destination.postal_code", "shipment.destination.region_code",
        "shipment.parcels[0].weight.grams"]
