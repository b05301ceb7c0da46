"""Demo data for ``make run``: warehouses in four regions with their bins, a small catalogue
with backorder policies and lead times, received stock, and a channel buffer; and for
shipping the carriers of our market with their services, table rates and the nodes'
origins.

Loaded through the inventory and shipping services' public APIs; every call is idempotent
(fixed request ids, an upsert for the catalogue, origins replaced), so loading it again on
every start changes nothing. Fulfilment gets where each SKU is stored at each node; returns
gets a policy set (a default, a marketplace's free returns, footwear checked by a person,
final-sale stickers), with returns sent back to the Reno node.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import grpc
from google.type import latlng_pb2, timeofday_pb2
from oms.common.v1 import common_pb2
from oms.fulfilment.v1 import fulfilment_pb2, fulfilment_pb2_grpc
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms.returns.v1 import returns_pb2, returns_pb2_grpc
from oms.shipping.v1 import shipping_pb2, shipping_pb2_grpc

ALLOW = inventory_pb2.BACKORDER_POLICY_ALLOW
DENY = inventory_pb2.BACKORDER_POLICY_DENY
UP_TO = inventory_pb2.BACKORDER_POLICY_ALLOW_UP_TO_LIMIT

# node id, name, city, area, postcode, country, lat, lng, priority, serves, time zone, cost
NODES = [
    ("us-west-reno", "Reno fulfilment centre", "Reno", "NV", "89502", "US", 39.5296, -119.8138,
     1, ["US", "CA"], "America/Los_Angeles", "6.50"),
    ("us-east-edison", "Edison fulfilment centre", "Edison", "NJ", "08817", "US",
     40.5187, -74.4121, 2, ["US", "CA"], "America/New_York", "5.90"),
    ("eu-central-frankfurt", "Frankfurt 3PL", "Frankfurt am Main", "HE", "60311", "DE",
     50.1109, 8.6821, 1, ["DE", "AT", "CH", "FR", "NL", "BE", "IT", "ES"], "Europe/Berlin",
     "4.80"),
    ("uk-coventry", "Coventry warehouse", "Coventry", "", "CV1 2GT", "GB", 52.4068, -1.5197, 1,
     ["GB", "IE"], "Europe/London", "4.20"),
]
# Two zones of three aisles each; bin codes sort in walking order.
BINS = [(f"{zone}-{aisle:02d}-{level}", zone, index)
        for index, (zone, aisle, level) in enumerate(
            (zone, aisle, level) for zone in ("A", "B") for aisle in (1, 2, 3)
            for level in ("1", "2"))]

# sku, title, gtin, grams, (l, w, h mm), fragile, MOQ, policy, limit, lead time days
PRODUCTS = [
    ("TSHIRT-BLK-M", "T-shirt, black, M", "4006381333931", 180, (300, 250, 20), False, 1,
     ALLOW, 0, 14),
    ("HOODIE-GRY-L", "Hoodie, grey, L", "4006381333948", 650, (350, 300, 60), False, 1,
     UP_TO, 50, 21),
    ("MUG-WHT-11OZ", "Mug, white, 11 oz", "4006381333955", 350, (120, 100, 100), True, 1,
     DENY, 0, 10),
    ("POSTER-A2", "Poster, A2, rolled", "4006381333962", 120, (620, 80, 80), False, 1,
     DENY, 0, 7),
    ("SNEAKER-42", "Sneaker, size 42", "4006381333979", 900, (330, 220, 120), False, 1,
     ALLOW, 0, 30),
    ("STICKER-PACK", "Sticker pack", "4006381333986", 10, (100, 70, 2), False, 5,
     DENY, 0, 5),
]

STOCK = {
    "us-west-reno": {"TSHIRT-BLK-M": 120, "HOODIE-GRY-L": 40, "MUG-WHT-11OZ": 200,
                     "STICKER-PACK": 500},
    "us-east-edison": {"TSHIRT-BLK-M": 80, "HOODIE-GRY-L": 60, "POSTER-A2": 150,
                       "SNEAKER-42": 25},
    "eu-central-frankfurt": {"TSHIRT-BLK-M": 100, "MUG-WHT-11OZ": 90, "SNEAKER-42": 40},
    "uk-coventry": {"TSHIRT-BLK-M": 60, "HOODIE-GRY-L": 30, "POSTER-A2": 50},
}

# Units of every SKU held back from the marketplace, so that it cannot sell the last ones.
CHANNEL_BUFFERS = [("amazon-us", "*", 5)]


def slots() -> list[tuple[str, str, str]]:
    """(node, SKU, bin): each node's SKUs slotted into its bins in walking order, one bin
    each, so that every demo order can be picked."""
    return [(node_id, sku, BINS[index][0])
            for node_id, levels in STOCK.items()
            for index, sku in enumerate(sorted(levels))]


def slots_request() -> fulfilment_pb2.BatchSetSlotsRequest:
    return fulfilment_pb2.BatchSetSlotsRequest(slots=[
        fulfilment_pb2.Slot(node_id=node_id, sku=sku, bin_code=bin_code)
        for node_id, sku, bin_code in slots()])


def load_fulfilment(fulfilment_target: str) -> None:
    """Where each demo SKU is stored at each node (setting the same slots again changes
    nothing)."""
    with grpc.insecure_channel(fulfilment_target) as channel:
        fulfilment_pb2_grpc.FulfilmentServiceStub(channel).BatchSetSlots(slots_request(),
                                                                         timeout=10)


def load(inventory_target: str) -> None:
    with grpc.insecure_channel(inventory_target) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        for (node_id, title, city, area, postcode, country, lat, lng, priority, serves, zone,
             cost) in NODES:
            stub.CreateFulfilmentNode(
                inventory_pb2.CreateFulfilmentNodeRequest(
                    fulfilment_node=inventory_pb2.FulfilmentNode(
                        node_id=node_id,
                        display_name=title,
                        type=inventory_pb2.NODE_TYPE_WAREHOUSE,
                        priority=priority,
                        address=common_pb2.Address(
                            recipient=title,
                            address_lines=["1 Logistics Way"],
                            locality=city,
                            administrative_area=area,
                            postal_code=postcode,
                            region_code=country,
                            location=latlng_pb2.LatLng(latitude=lat, longitude=lng),
                        ),
                        service_regions=serves,
                        cutoff_time=timeofday_pb2.TimeOfDay(hours=15),
                        time_zone=zone,
                        shipment_cost=common_pb2.Money(
                            currency_code="EUR" if country == "DE" else
                            "GBP" if country == "GB" else "USD", amount=cost),
                        bins=[inventory_pb2.Bin(bin_code=code, zone=area_zone,
                                                walk_sequence=sequence)
                              for code, area_zone, sequence in BINS],
                    ),
                    request_id=f"demo-node-{node_id}",
                ),
                timeout=10,
            )
        stub.BatchUpsertProducts(
            inventory_pb2.BatchUpsertProductsRequest(
                products=[
                    inventory_pb2.Product(
                        sku=sku,
                        title=title,
                        gtin=gtin,
                        weight=common_pb2.Weight(grams=grams),
                        dimensions=common_pb2.Dimensions(
                            length_mm=length, width_mm=width, height_mm=height
                        ),
                        fragile=fragile,
                        returnable=True,
                        minimum_order_quantity=moq,
                        backorder_policy=policy,
                        backorder_limit=limit,
                        supplier_lead_time_days=lead_time,
                    )
                    for (sku, title, gtin, grams, (length, width, height), fragile, moq, policy,
                         limit, lead_time) in PRODUCTS
                ]
            ),
            timeout=10,
        )
        for node_id, levels in STOCK.items():
            stub.ReceiveStock(
                inventory_pb2.ReceiveStockRequest(
                    parent=f"fulfilmentNodes/{node_id}",
                    reference=f"PO-DEMO-{node_id}",
                    lines=[inventory_pb2.ReceiptLine(sku=sku, quantity=units)
                           for sku, units in levels.items()],
                    request_id=f"demo-receipt-{node_id}",
                ),
                timeout=10,
            )
        for channel_id, sku, units in CHANNEL_BUFFERS:
            stub.SetChannelBuffer(
                inventory_pb2.SetChannelBufferRequest(
                    channel_buffer=inventory_pb2.ChannelBuffer(
                        channel=channel_id, sku=sku, buffer=units)
                ),
                timeout=10,
            )


# id, kind, channels: one partner of each kind, the channel and payment provider on the
# demo channel.
PARTNERS = [
    ("demo-shop", "sales-channel", ["shopify-demo"]),
    ("demo-3pl", "3pl", []),
    ("demo-carrier", "carrier", []),
    ("demo-payments", "payment-provider", ["shopify-demo"]),
]
# What the 3PL and the carrier are bound to: the demo's 3PL node, a carrier of its US nodes.
PARTNER_BINDINGS = {"demo-3pl": ["--node", "eu-central-frankfurt"],
                    "demo-carrier": ["--carrier", "ups"]}


def partners(gateway_env: dict[str, str], path: Path) -> dict[str, dict[str, object]]:
    """Creates the demo partners that do not exist yet (through the gateway's CLI) and keeps
    their credentials in ``path`` (API key, webhook signing secret); a partner whose key was
    lost gets a new one, the old revoked at once. Keys are shown once, so the file is the only
    copy."""
    known: dict[str, dict[str, object]] = json.loads(path.read_text()) if path.exists() else {}
    cli = [sys.executable, "-m", "oms_gateway", "partners"]
    listed = subprocess.run([*cli, "list"], env=gateway_env, capture_output=True, text=True,
                            check=True).stdout.splitlines()
    existing = {json.loads(line)["id"] for line in listed}
    for partner_id, kind, channels in PARTNERS:
        if partner_id in existing and partner_id in known:
            continue
        if partner_id in existing:
            argv = [*cli, "rotate-key", partner_id, "--overlap-hours", "0"]
        else:
            argv = [*cli, "create", "--id", partner_id, "--name", partner_id, "--kind", kind,
                    *(arg for channel in channels for arg in ("--channel", channel)),
                    *PARTNER_BINDINGS.get(partner_id, [])]
        issued = json.loads(subprocess.run(argv, env=gateway_env, capture_output=True,
                                           text=True, check=True).stdout)
        known[partner_id] = {"kind": kind, "channels": channels, "apiKey": issued["apiKey"]}
    for partner_id, entry in known.items():
        # The secret the partner signs its webhooks with (Standard Webhooks, "whsec_…").
        if "webhookSecret" not in entry:
            issued = json.loads(subprocess.run(
                [*cli, "webhook-secret", partner_id, "--overlap-hours", "0"], env=gateway_env,
                capture_output=True, text=True, check=True).stdout)
            entry["webhookSecret"] = issued["webhookSecret"]
    path.write_text(json.dumps(known, indent=2) + "\n")
    path.chmod(0o600)
    return known


# --- Shipping: the carriers our sellers use, origins for the demo nodes, table rates ---

MON_FRI = [1, 2, 3, 4, 5]  # google.type.DayOfWeek
MON_SAT = [*MON_FRI, 6]
EU = ["DE", "AT", "CH", "FR", "NL", "BE", "IT", "ES"]
# carrier id, name, tracking scheme, tracking URL
CARRIERS = [
    ("royal_mail", "Royal Mail", "S10", "https://www.royalmail.com/track-your-item#/tracking-results/{tracking_number}"),
    ("evri", "Evri", "MOD10", "https://www.evri.com/track/parcel/{tracking_number}"),
    ("dpd", "DPD", "MOD10", "https://track.dpd.co.uk/parcels/{tracking_number}"),
    ("parcelforce", "Parcelforce Worldwide", "S10", "https://www.parcelforce.com/track-trace?trackNumber={tracking_number}"),
    ("yodel", "Yodel", "MOD10", "https://www.yodel.co.uk/tracking/{tracking_number}"),
    ("ups", "UPS", "UPS_1Z", "https://www.ups.com/track?tracknum={tracking_number}"),
    ("fedex", "FedEx", "MOD10", "https://www.fedex.com/fedextrack/?trknbr={tracking_number}"),
    ("dhl_express", "DHL Express", "MOD7", "https://www.dhl.com/en/express/tracking.html?AWB={tracking_number}"),
    ("usps", "USPS", "MOD10", "https://tools.usps.com/go/TrackConfirmAction?tLabels={tracking_number}"),
]
LEVEL = {name: getattr(shipping_pb2, f"SERVICE_LEVEL_{name}") for name in (
    "ECONOMY", "STANDARD", "EXPEDITED", "EXPRESS", "NEXT_DAY", "SAME_DAY", "INTERNATIONAL")}
# carrier, service code, name, level, transit days, from, to, cut-off hour (None: the
# origin's), pickup days, currency, price of the first break, added per break
SERVICES = [
    ("royal_mail", "royal_mail_tracked_48", "Tracked 48", "STANDARD", 2, ["GB"], ["GB"], None,
     MON_SAT, "3.35", "0.90"),
    ("royal_mail", "royal_mail_tracked_24", "Tracked 24", "NEXT_DAY", 1, ["GB"], ["GB"], None,
     MON_SAT, "4.25", "1.10"),
    ("royal_mail", "royal_mail_international_tracked", "International Tracked",
     "INTERNATIONAL", 4, ["GB"], ["IE", *EU], None, MON_FRI, "9.50", "2.40"),
    ("evri", "evri_standard", "Standard", "STANDARD", 3, ["GB"], ["GB"], 14, MON_FRI,
     "2.89", "0.70"),
    ("evri", "evri_next_day", "Next Day", "NEXT_DAY", 1, ["GB"], ["GB"], 14, MON_FRI,
     "4.49", "0.95"),
    ("dpd", "dpd_next_day", "DPD Next Day", "NEXT_DAY", 1, ["GB"], ["GB"], 17, MON_FRI,
     "5.20", "0.80"),
    ("dpd", "dpd_classic_de", "DPD Classic", "STANDARD", 2, ["DE"], ["DE"], 16, MON_FRI,
     "4.10", "0.85"),
    ("dpd", "dpd_classic_europe", "DPD Classic Europe", "INTERNATIONAL", 3, ["DE", "GB"],
     ["IE", *EU], 16, MON_FRI, "9.80", "1.90"),
    ("parcelforce", "parcelforce_express_48", "express48", "STANDARD", 2, ["GB"], ["GB"], 16,
     MON_FRI, "6.40", "0.75"),
    ("parcelforce", "parcelforce_express_24", "express24", "NEXT_DAY", 1, ["GB"], ["GB"], 16,
     MON_FRI, "8.90", "0.90"),
    ("parcelforce", "parcelforce_express_am", "expressAM", "EXPRESS", 1, ["GB"], ["GB"], 16,
     MON_FRI, "12.50", "1.10"),
    ("yodel", "yodel_xpect_48", "Xpect 48", "STANDARD", 2, ["GB"], ["GB"], 15, MON_FRI,
     "3.05", "0.80"),
    ("yodel", "yodel_xpect_24", "Xpect 24", "NEXT_DAY", 1, ["GB"], ["GB"], 15, MON_FRI,
     "4.10", "0.95"),
    ("ups", "ups_ground", "UPS Ground", "STANDARD", 3, ["US"], ["US"], 17, MON_FRI,
     "9.20", "1.60"),
    ("ups", "ups_2nd_day_air", "UPS 2nd Day Air", "EXPEDITED", 2, ["US"], ["US"], 17, MON_FRI,
     "17.40", "2.90"),
    ("ups", "ups_next_day_air", "UPS Next Day Air", "NEXT_DAY", 1, ["US"], ["US"], 17, MON_FRI,
     "29.80", "4.10"),
    ("ups", "ups_standard_canada", "UPS Standard to Canada", "INTERNATIONAL", 4, ["US"],
     ["CA"], 17, MON_FRI, "21.00", "3.20"),
    ("fedex", "fedex_ground", "FedEx Ground", "STANDARD", 3, ["US"], ["US"], 18, MON_FRI,
     "9.05", "1.55"),
    ("fedex", "fedex_express_saver", "FedEx Express Saver", "EXPRESS", 3, ["US"], ["US"], 18,
     MON_FRI, "15.90", "2.40"),
    ("fedex", "fedex_2day", "FedEx 2Day", "EXPEDITED", 2, ["US"], ["US"], 18, MON_FRI,
     "17.10", "2.80"),
    ("fedex", "fedex_priority_overnight", "FedEx Priority Overnight", "NEXT_DAY", 1, ["US"],
     ["US"], 18, MON_FRI, "31.50", "4.30"),
    ("dhl_express", "dhl_express_domestic", "DHL Express Domestic", "NEXT_DAY", 1, ["DE"],
     ["DE"], 18, MON_FRI, "11.90", "1.40"),
    ("dhl_express", "dhl_express_worldwide_eu", "DHL Express Worldwide", "INTERNATIONAL", 2,
     ["DE", "GB"], ["IE", *EU], 18, MON_FRI, "24.00", "3.10"),
    ("dhl_express", "dhl_express_worldwide_us", "DHL Express Worldwide", "INTERNATIONAL", 2,
     ["US"], ["CA"], 18, MON_FRI, "38.00", "4.50"),
    ("usps", "usps_ground_advantage", "USPS Ground Advantage", "STANDARD", 4, ["US"], ["US"],
     None, MON_SAT, "5.40", "1.20"),
    ("usps", "usps_priority_mail", "USPS Priority Mail", "EXPEDITED", 2, ["US"], ["US"],
     None, MON_SAT, "9.35", "1.70"),
    ("usps", "usps_priority_mail_express", "USPS Priority Mail Express", "NEXT_DAY", 1,
     ["US"], ["US"], None, MON_SAT, "30.45", "3.60"),
    ("usps", "usps_priority_mail_international", "USPS Priority Mail International",
     "INTERNATIONAL", 6, ["US"], ["CA"], None, MON_FRI, "32.00", "3.90"),
]
CURRENCIES = {"GB": "GBP", "DE": "EUR", "US": "USD"}
BREAK_GRAMS = [500, 1000, 2000, 5000, 10000, 20000, 30000]
# Remote areas (by postcode prefix) that cost more per parcel, in the card's own currency.
REMOTE = {"GB": ["HS", "ZE", "KW15", "KW16", "KW17", "IV41", "PA20", "BT"],
          "US": ["995", "996", "997", "998", "999", "967", "968"]}
# The demo nodes as shipping origins: node id, the carriers collecting there.
ORIGIN_CARRIERS = {
    "us-west-reno": ["ups", "fedex", "usps", "dhl_express"],
    "us-east-edison": ["ups", "fedex", "usps", "dhl_express"],
    "eu-central-frankfurt": ["dpd", "dhl_express"],
    "uk-coventry": ["royal_mail", "evri", "dpd", "parcelforce", "yodel", "dhl_express"],
}


def _money(currency: str, amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code=currency, amount=amount)


def _rate_card(service: tuple, origin: str) -> shipping_pb2.RateCard:  # type: ignore[type-arg]
    """The card of a service from one origin country, in that country's currency (a
    service shipping from several countries has a card for each)."""
    (_, code, _, level, _, _, destinations, _, _, first, step) = service
    currency = CURRENCIES[origin]
    zones = []
    breaks = []
    remote_prefixes = []
    for destination in destinations:
        # Abroad, one zone per destination country, named after it.
        zone = "domestic" if origin == destination else destination.lower()
        zones.append(shipping_pb2.Zone(zone=zone, origin_country=origin,
                                       destination_country=destination))
        if origin == destination:
            remote_prefixes += [f"{destination}:{p}" for p in REMOTE.get(destination, [])]
    for index_zone, zone in enumerate(sorted({z.zone for z in zones})):
        uplift = Decimal(0) if zone == "domestic" else Decimal(step) * (index_zone % 3)
        for index, grams in enumerate(BREAK_GRAMS):
            price = Decimal(first) + Decimal(step) * index + uplift
            breaks.append(shipping_pb2.WeightBreak(zone=zone, max_weight_grams=grams,
                                                   price=_money(currency, f"{price:.2f}")))
    international = level == "INTERNATIONAL"
    us = origin == "US"
    return shipping_pb2.RateCard(
        service_code=code, currency_code=currency,
        dim_divisor=5000 if international or us else 0,
        zones=zones, breaks=breaks, fuel_percent="8.5" if us else "4",
        residential_surcharge=_money(currency, "5.15") if us else None,
        remote_area_surcharge=_money(currency, "3.50") if remote_prefixes else None,
        remote_postcode_prefixes=sorted(set(remote_prefixes)),
        oversize_length_mm=2438 if us else 1200,
        oversize_girth_mm=3302 if us else 2500,
        oversize_surcharge=_money(currency, "15.00"),
        duties_paid_fee=_money(currency, "11.00") if international else None,
        # From Germany the demo ships within the EU's customs union (Switzerland simplified
        # into it); from the UK and the US across a customs border.
        duty_percent="5" if international and origin != "DE" else "",
    )


def shipping_carriers() -> list[shipping_pb2.Carrier]:
    """The demo carriers with their services (table-rated, working offline)."""
    carriers = []
    for carrier_id, name, scheme, url in CARRIERS:
        services = []
        for (owner, code, title, level, transit, origins, destinations, cutoff, days,
             *_rest) in SERVICES:
            if owner != carrier_id:
                continue
            services.append(shipping_pb2.CarrierService(
                code=code, display_name=title, service_level=LEVEL[level],
                transit_days=transit, pickup_days=days,  # type: ignore[arg-type]
                cutoff_time=timeofday_pb2.TimeOfDay(hours=cutoff) if cutoff else None,
                origin_countries=origins, destination_countries=destinations,
                international=level == "INTERNATIONAL", max_weight_grams=30000))
        carriers.append(shipping_pb2.Carrier(
            carrier_id=carrier_id, display_name=name, mode=shipping_pb2.CARRIER_MODE_TABLE_RATE,
            tracking_scheme=getattr(shipping_pb2, f"TRACKING_SCHEME_{scheme}"),
            tracking_url_template=url, services=services))
    return carriers


def load_shipping(shipping_target: str) -> None:
    """Carriers, rate cards, the demo nodes' origins and a free-shipping rule, through the
    shipping service's API; idempotent like the rest (fixed request ids, origins replaced)."""
    with grpc.insecure_channel(shipping_target) as channel:
        stub = shipping_pb2_grpc.ShippingServiceStub(channel)
        for carrier in shipping_carriers():
            stub.CreateCarrier(shipping_pb2.CreateCarrierRequest(
                request_id=f"demo-carrier-{carrier.carrier_id}", carrier=carrier), timeout=10)
        for service in SERVICES:
            code = service[1]
            for origin in service[5]:
                card_id = f"{code}-{origin}".lower().replace("_", "-")
                stub.CreateRateCard(shipping_pb2.CreateRateCardRequest(
                    request_id=f"demo-card-{card_id}", rate_card_id=card_id,
                    rate_card=_rate_card(service, origin)), timeout=10)
        for (node_id, title, city, area, postcode, country, _lat, _lng, _priority, _serves,
             zone, _cost) in NODES:
            stub.CreateOrigin(shipping_pb2.CreateOriginRequest(origin=shipping_pb2.Origin(
                node_id=node_id,
                address=common_pb2.Address(recipient=title, address_lines=["1 Logistics Way"],
                                           locality=city, administrative_area=area,
                                           postal_code=postcode, region_code=country),
                time_zone=zone, cutoff_time=timeofday_pb2.TimeOfDay(hours=15),
                carriers=ORIGIN_CARRIERS[node_id])), timeout=10)
        stub.CreateShippingRule(shipping_pb2.CreateShippingRuleRequest(
            request_id="demo-rule-free-uk-standard", rule=shipping_pb2.ShippingRule(
                display_name="Free UK standard shipping over £50", priority=10,
                service_levels=[shipping_pb2.SERVICE_LEVEL_STANDARD],
                destination_countries=["GB"], min_basket_value=_money("GBP", "50.00"),
                free=True)), timeout=10)


# Where demo returns are sent back to (OMS_RETURNS_RETURN_NODE_ID): a demo node with an
# origin in shipping, so a return label can be bought.
RETURNS_NODE = "us-west-reno"


def return_policies() -> list[tuple[str, returns_pb2.ReturnPolicy]]:
    """(id, policy): the default for every channel, then ever more specific ones."""
    r = returns_pb2
    return [
        ("default", r.ReturnPolicy(
            window_days=30, auto_approve=True,
            conditions=[r.ITEM_CONDITION_UNUSED, r.ITEM_CONDITION_ORIGINAL_PACKAGING],
            customer_pays_return_shipping=True, return_shipping_fee=_money("USD", "4.95"),
            outcomes=[r.RETURN_OUTCOME_REFUND, r.RETURN_OUTCOME_STORE_CREDIT,
                      r.RETURN_OUTCOME_EXCHANGE, r.RETURN_OUTCOME_KEEP_IT],
            keep_it_below=_money("USD", "5.00"))),
        # The marketplace's own terms: free returns for its buyers.
        ("amazon-us", r.ReturnPolicy(
            channel="amazon-us", window_days=30, auto_approve=True,
            outcomes=[r.RETURN_OUTCOME_REFUND])),
        ("footwear", r.ReturnPolicy(
            category="footwear", category_sku_prefixes=["SNEAKER-"], window_days=60,
            restocking_fee_bps=1000, conditions=[r.ITEM_CONDITION_ORIGINAL_PACKAGING],
            outcomes=[r.RETURN_OUTCOME_REFUND, r.RETURN_OUTCOME_EXCHANGE])),
        ("stickers-final-sale", r.ReturnPolicy(sku="STICKER-PACK", non_returnable=True)),
    ]


def load_returns(returns_target: str) -> None:
    """The demo policy set, through the returns service's API (fixed request ids: loading
    it again changes nothing)."""
    with grpc.insecure_channel(returns_target) as channel:
        stub = returns_pb2_grpc.ReturnsServiceStub(channel)
        for policy_id, policy in return_policies():
            stub.CreateReturnPolicy(returns_pb2.CreateReturnPolicyRequest(
                request_id=f"demo-return-policy-{policy_id}", return_policy_id=policy_id,
                return_policy=policy), timeout=10)
