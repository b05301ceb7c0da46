"""Labels between their protobuf messages, the rules' values and the stored rows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date
from typing import Any

from google.protobuf import json_format
from google.type import date_pb2
from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2
from oms_platform.errors import Violations
from oms_platform.money import Money, check_money
from oms_platform.values import timestamp
from sqlalchemy import Row

from oms_shipping.carriers.domain import Level
from oms_shipping.documents.domain import LabelDocument, PrintedAddress
from oms_shipping.labels.domain import Address, LabelRequest, LabelState, label_name
from oms_shipping.rating.cards import Incoterm, Parcel
from oms_shipping.rating.domain import Goal

STATES = {LabelState.PURCHASED: shipping_pb2.LABEL_STATE_PURCHASED,
          LabelState.VOIDED: shipping_pb2.LABEL_STATE_VOIDED,
          LabelState.MANIFESTED: shipping_pb2.LABEL_STATE_MANIFESTED}
STATE_NAMES = {name.removeprefix("LABEL_STATE_"): LabelState(name.removeprefix("LABEL_STATE_"))
               for name in shipping_pb2.LabelState.keys() if name != "LABEL_STATE_UNSPECIFIED"}


def label_request(violations: Violations, path: str,
                  message: shipping_pb2.CreateLabelRequest) -> LabelRequest:
    """The request as the rules see it; a fault of the message itself (an unknown enum, bad
    money) is added to ``violations`` under ``path``."""
    parcel = message.parcel
    declared: Money | None = None
    if parcel.HasField("declared_value"):
        declared = check_money(violations, f"{path}parcel.declared_value",
                               parcel.declared_value.currency_code, parcel.declared_value.amount)
    level = None
    if message.service_level:
        try:
            level = Level(message.service_level)
        except ValueError:
            violations.add(f"{path}service_level", "must be a ServiceLevel")
    goal = Goal.CHEAPEST_ON_TIME
    if message.goal:
        try:
            goal = Goal(message.goal)
        except ValueError:
            violations.add(f"{path}goal", "must be a RatingGoal")
    incoterm = Incoterm.DDU
    if message.incoterm:
        try:
            incoterm = Incoterm(message.incoterm)
        except ValueError:
            violations.add(f"{path}incoterm", "must be an Incoterm")
    destination = message.destination
    return LabelRequest(
        request_id=message.request_id,
        package=message.package,
        orders=tuple(message.orders),
        node_id=message.node_id,
        destination=Address(destination.region_code, destination.postal_code.strip(),
                            destination.locality, destination.administrative_area,
                            tuple(destination.address_lines),
                            (destination.recipient,) if destination.recipient else (),
                            destination.organization),
        residential=message.residential,
        parcel=Parcel(parcel.weight.grams, parcel.dimensions.length_mm,
                      parcel.dimensions.width_mm, parcel.dimensions.height_mm, declared),
        service_code=message.service_code,
        service_level=level,
        promise_time=(message.promise_time.ToDatetime(tzinfo=UTC)
                      if message.HasField("promise_time") else None),
        goal=goal,
        incoterm=incoterm,
        return_label=message.return_label,
    )


def address_json(message: common_pb2.Address) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def address_message(data: Mapping[str, Any]) -> common_pb2.Address:
    return json_format.ParseDict(data, common_pb2.Address(), ignore_unknown_fields=True)


def date_message(day: date | None) -> date_pb2.Date | None:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day) if day else None


def money_message(amount: Any, currency_code: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code=currency_code,
                            amount=f"{Money.of(currency_code, amount).amount:f}")


def label_message(row: Row[Any]) -> shipping_pb2.Label:
    parcel = shipping_pb2.Parcel(weight=common_pb2.Weight(grams=row.weight_grams))
    if row.length_mm or row.width_mm or row.height_mm:
        parcel.dimensions.CopyFrom(common_pb2.Dimensions(
            length_mm=row.length_mm or 0, width_mm=row.width_mm or 0,
            height_mm=row.height_mm or 0))
    if row.declared_value is not None:
        parcel.declared_value.CopyFrom(money_message(row.declared_value,
                                                     row.declared_value_currency))
    return shipping_pb2.Label(
        name=label_name(row.id),
        package=row.package,
        orders=list(row.orders),
        node_id=row.node_id,
        carrier=row.carrier,
        service_code=row.service_code,
        tracking_number=row.tracking_number,
        tracking_url=row.tracking_url,
        cost=money_message(row.cost, row.currency_code),
        state=STATES[LabelState(row.state)],
        ship_date=date_message(row.ship_date),
        estimated_delivery_date=date_message(row.estimated_delivery_date),
        manifest=f"manifests/{row.manifest_id}" if row.manifest_id else "",
        destination=address_message(row.destination),
        parcel=parcel,
        create_time=timestamp(row.create_time),
        tracking_status=shipping_pb2.TrackingStatus.Value(
            f"TRACKING_STATUS_{row.tracking_status}"),
    )


def printed_address(data: Mapping[str, Any]) -> PrintedAddress:
    address = address_message(data)
    return PrintedAddress(tuple(address.address_lines), address.locality,
                          address.administrative_area, address.postal_code, address.region_code,
                          name=address.recipient, organization=address.organization)


def label_document(row: Row[Any]) -> LabelDocument:
    return LabelDocument(
        tracking_number=row.tracking_number,
        carrier=row.carrier.replace("_", " "),
        service=row.service_name or row.service_code,
        ship_from=printed_address(row.ship_from),
        ship_to=printed_address(row.destination),
        weight_grams=row.weight_grams,
        package=row.package,
        ship_date=row.ship_date,
        orders=tuple(row.orders),
    )

