"""Carriers, their services and origins between their messages, their rows and the
domain's view. A service is stored as a JSON object inside its carrier's row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import time
from typing import Any

from google.protobuf import json_format
from google.type import dayofweek_pb2, timeofday_pb2
from oms.common.v1 import common_pb2
from oms.shipping.v1 import shipping_pb2
from oms_platform.errors import Violations
from oms_platform.values import timestamp
from sqlalchemy import Row

from oms_shipping.carriers.domain import (
    Carrier,
    CarrierService,
    Level,
    Mode,
    Origin,
    check_time_of_day,
)

# google.type.DayOfWeek numbers Monday 1 to Sunday 7; datetime.weekday() Monday 0 to Sunday 6.
_SUNDAY = dayofweek_pb2.SUNDAY


def level(value: int) -> Level:
    """The level of a known enum number; an unknown one stays a plain int for the checks to
    refuse."""
    return Level(value) if value in Level._value2member_map_ else value  # type: ignore[return-value]


def time_of(violations: Violations, path: str, message: Any, present: bool) -> time | None:
    if not present:
        return None
    check_time_of_day(violations, path, message.hours, message.minutes, message.seconds,
                      message.nanos)
    if not (0 <= message.hours <= 23 and 0 <= message.minutes <= 59
            and 0 <= message.seconds <= 59):
        return None
    return time(message.hours, message.minutes, message.seconds)


def time_message(value: time | None) -> timeofday_pb2.TimeOfDay | None:
    if value is None:
        return None
    return timeofday_pb2.TimeOfDay(hours=value.hour, minutes=value.minute, seconds=value.second)


def service_of(violations: Violations, path: str,
               message: shipping_pb2.CarrierService) -> CarrierService:
    days: set[int] = set()
    for index, day in enumerate(message.pickup_days):
        if not dayofweek_pb2.MONDAY <= day <= _SUNDAY:
            violations.add(f"{path}.pickup_days[{index}]", "must be a day of the week")
        else:
            days.add(day - 1)
    return CarrierService(
        code=message.code,
        display_name=message.display_name,
        service_level=level(message.service_level),
        transit_days=message.transit_days,
        pickup_days=frozenset(days),
        cutoff_time=time_of(violations, f"{path}.cutoff_time", message.cutoff_time,
                            message.HasField("cutoff_time")),
        origin_countries=frozenset(message.origin_countries),
        destination_countries=frozenset(message.destination_countries),
        international=message.international,
        max_weight_grams=message.max_weight_grams,
    )


def services_of(violations: Violations, path: str,
                messages: Sequence[shipping_pb2.CarrierService]) -> list[CarrierService]:
    return [service_of(violations, f"{path}[{i}]", m) for i, m in enumerate(messages)]


def service_json(service: CarrierService) -> dict[str, Any]:
    return {
        "code": service.code,
        "display_name": service.display_name,
        "service_level": int(service.service_level),
        "transit_days": service.transit_days,
        "pickup_days": sorted(service.pickup_days),
        "cutoff_time": service.cutoff_time.isoformat() if service.cutoff_time else None,
        "origin_countries": sorted(service.origin_countries),
        "destination_countries": sorted(service.destination_countries),
        "international": service.international,
        "max_weight_grams": service.max_weight_grams,
    }


def service_from_json(data: Mapping[str, Any]) -> CarrierService:
    return CarrierService(
        code=data["code"],
        display_name=data["display_name"],
        service_level=Level(data["service_level"]),
        transit_days=data["transit_days"],
        pickup_days=frozenset(data["pickup_days"]),
        cutoff_time=time.fromisoformat(data["cutoff_time"]) if data["cutoff_time"] else None,
        origin_countries=frozenset(data["origin_countries"]),
        destination_countries=frozenset(data["destination_countries"]),
        international=data["international"],
        max_weight_grams=data["max_weight_grams"],
    )


def service_message(service: CarrierService) -> shipping_pb2.CarrierService:
    return shipping_pb2.CarrierService(
        code=service.code,
        display_name=service.display_name,
        service_level=int(service.service_level),  # type: ignore[arg-type]
        transit_days=service.transit_days,
        pickup_days=[day + 1 for day in sorted(service.pickup_days)],  # type: ignore[misc]
        cutoff_time=time_message(service.cutoff_time),
        origin_countries=sorted(service.origin_countries),
        destination_countries=sorted(service.destination_countries),
        international=service.international,
        max_weight_grams=service.max_weight_grams,
    )


def carrier_values(message: shipping_pb2.Carrier,
                   services: Sequence[CarrierService]) -> dict[str, Any]:
    """The columns of a carrier (every updatable one)."""
    return {
        "display_name": message.display_name,
        "mode": message.mode or shipping_pb2.CARRIER_MODE_TABLE_RATE,
        "karrio_carrier": message.karrio_carrier,
        "tracking_scheme": message.tracking_scheme,
        "tracking_url_template": message.tracking_url_template,
        "services": [service_json(s) for s in services],
        "disabled": message.disabled,
    }


# The columns each path of an update mask writes.
CARRIER_COLUMNS: dict[str, tuple[str, ...]] = {
    "display_name": ("display_name",), "mode": ("mode",), "karrio_carrier": ("karrio_carrier",),
    "tracking_scheme": ("tracking_scheme",),
    "tracking_url_template": ("tracking_url_template",), "services": ("services",),
    "disabled": ("disabled",),
}
ORIGIN_COLUMNS: dict[str, tuple[str, ...]] = {
    "address": ("address",), "time_zone": ("time_zone",), "cutoff_time": ("cutoff_time",),
    "carriers": ("carriers",),
}


def changes(values: Mapping[str, Any], paths: Sequence[str],
            columns: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    return {column: values[column] for path in paths for column in columns[path]}


def carrier_of(row: Row[Any]) -> Carrier:
    return Carrier(
        carrier_id=row.carrier_id,
        services=tuple(service_from_json(s) for s in row.services),
        display_name=row.display_name,
        mode=Mode(row.mode),
        disabled=row.disabled,
        karrio_carrier=row.karrio_carrier,
        tracking_scheme=row.tracking_scheme,
        tracking_url_template=row.tracking_url_template,
    )


def carrier_message(row: Row[Any]) -> shipping_pb2.Carrier:
    carrier = carrier_of(row)
    return shipping_pb2.Carrier(
        name=f"carriers/{row.carrier_id}",
        carrier_id=row.carrier_id,
        display_name=row.display_name,
        mode=row.mode,
        karrio_carrier=row.karrio_carrier,
        tracking_scheme=row.tracking_scheme,
        tracking_url_template=row.tracking_url_template,
        services=[service_message(s) for s in carrier.services],
        disabled=row.disabled,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
    )


# --- Origins ---


def origin_values(violations: Violations, message: shipping_pb2.Origin) -> dict[str, Any]:
    return {
        "address": json_format.MessageToDict(message.address,
                                             preserving_proto_field_name=True),
        "time_zone": message.time_zone,
        "cutoff_time": time_of(violations, "origin.cutoff_time", message.cutoff_time,
                               message.HasField("cutoff_time")),
        "carriers": list(message.carriers),
    }


def origin_of(row: Row[Any]) -> Origin:
    address = row.address
    return Origin(
        node_id=row.node_id,
        country=address.get("region_code", ""),
        postal_code=address.get("postal_code", ""),
        time_zone=row.time_zone,
        cutoff_time=row.cutoff_time,
        carriers=frozenset(row.carriers),
        subdivision=address.get("administrative_area", ""),
        locality=address.get("locality", ""),
        address_lines=tuple(address.get("address_lines", ())),
    )


def origin_message(row: Row[Any]) -> shipping_pb2.Origin:
    return shipping_pb2.Origin(
        name=f"origins/{row.node_id}",
        node_id=row.node_id,
        address=json_format.ParseDict(row.address, common_pb2.Address()),
        time_zone=row.time_zone,
        cutoff_time=time_message(row.cutoff_time),
        carriers=row.carriers,
        update_time=timestamp(row.update_time),
    )
