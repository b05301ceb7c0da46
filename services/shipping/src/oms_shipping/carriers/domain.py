"""Carriers, their services and origins as plain data, and the checks of each field."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
from oms_platform.errors import FieldViolation, InvalidArgument, Violations

CARRIER_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SERVICE_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
NODE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CARRIER_NAME = re.compile(r"^carriers/([^/]+)$")
ORIGIN_NAME = re.compile(r"^origins/([^/]+)$")
MAX_SERVICES = 50
MAX_COUNTRIES = 300
MAX_ORIGIN_CARRIERS = 100
MAX_TEXT = 200
MAX_REQUEST_ID = 128
MAX_TRANSIT_DAYS = 60
WEEKDAYS = frozenset(range(5))  # Monday to Friday, as datetime.weekday() counts

CARRIER_PATHS = ("display_name", "mode", "karrio_carrier", "tracking_scheme",
                 "tracking_url_template", "services", "disabled")
ORIGIN_PATHS = ("address", "time_zone", "cutoff_time", "carriers")


class Level(enum.IntEnum):
    """Service levels, numbered as ``oms.shipping.v1.ServiceLevel``."""

    ECONOMY = 1
    STANDARD = 2
    EXPEDITED = 3
    EXPRESS = 4
    NEXT_DAY = 5
    SAME_DAY = 6
    INTERNATIONAL = 7


class Mode(enum.IntEnum):
    TABLE_RATE = 1
    KARRIO = 2


@dataclass(frozen=True)
class CarrierService:
    code: str
    service_level: Level
    transit_days: int
    display_name: str = ""
    pickup_days: frozenset[int] = frozenset()  # datetime.weekday() numbers; empty: Mon-Fri
    cutoff_time: time | None = None
    origin_countries: frozenset[str] = frozenset()
    destination_countries: frozenset[str] = frozenset()
    international: bool = False
    max_weight_grams: int = 0

    @property
    def pickup_weekdays(self) -> frozenset[int]:
        return self.pickup_days or WEEKDAYS


@dataclass(frozen=True)
class Carrier:
    carrier_id: str
    services: tuple[CarrierService, ...]
    display_name: str = ""
    mode: Mode = Mode.TABLE_RATE
    disabled: bool = False
    karrio_carrier: str = ""
    tracking_scheme: int = 0  # oms.shipping.v1.TrackingScheme
    tracking_url_template: str = ""

    def service(self, code: str) -> CarrierService | None:
        return next((s for s in self.services if s.code == code), None)


@dataclass(frozen=True)
class Origin:
    node_id: str
    country: str
    postal_code: str
    time_zone: str
    cutoff_time: time | None = None
    carriers: frozenset[str] = frozenset()
    subdivision: str = ""  # the address's administrative area, for regional holidays
    # The rest of the address, for a carrier rated through its own API.
    locality: str = ""
    address_lines: tuple[str, ...] = ()


# --- Checks ---


def parse_name(pattern: re.Pattern[str], name: str, template: str,
               field: str = "name") -> str:
    match = pattern.fullmatch(name)
    if match is None:
        raise InvalidArgument([FieldViolation(field, f"must be {template}")])
    return match.group(1)


def id_of(violations: Violations, pattern: re.Pattern[str], name: str, given: str,
          message: str, id_field: str, template: str) -> str:
    """The id of a resource in an update: from its `name` when set (and then the id, if
    given too, must agree), else the id itself."""
    if not name:
        return given
    match = pattern.fullmatch(name)
    if match is None:
        violations.add(f"{message}.name", f"must be {template}")
        return given
    if given and given != match.group(1):
        violations.add(f"{message}.{id_field}", f"does not match {message}.name")
    return match.group(1)


def check_pattern(violations: Violations, path: str, value: str,
                  pattern: re.Pattern[str]) -> None:
    if not value:
        violations.add(path, "required")
    elif not pattern.fullmatch(value):
        violations.add(path, f"must match {pattern.pattern}")


def check_text(violations: Violations, path: str, value: str, limit: int = MAX_TEXT) -> None:
    if len(value) > limit:
        violations.add(path, f"must be at most {limit} characters")


def check_request_id(violations: Violations, path: str, request_id: str) -> None:
    if not request_id:
        violations.add(path, "required: it makes the create idempotent")
    check_text(violations, path, request_id, MAX_REQUEST_ID)


# Cached: every rate shop and label checks its destination's country.
@functools.lru_cache(maxsize=1024)
def is_country(code: str) -> bool:
    return len(code) == 2 and code.isupper() and pycountry.countries.get(alpha_2=code) is not None


def check_country(violations: Violations, path: str, code: str) -> None:
    if not code:
        violations.add(path, "required")
    elif not is_country(code):
        violations.add(path, "must be an ISO 3166-1 alpha-2 country code such as GB")


def check_countries(violations: Violations, path: str, codes: Sequence[str]) -> None:
    if len(codes) > MAX_COUNTRIES:
        violations.add(path, f"at most {MAX_COUNTRIES} countries")
        return
    seen: set[str] = set()
    for index, code in enumerate(codes):
        if not is_country(code):
            violations.add(f"{path}[{index}]",
                           "must be an ISO 3166-1 alpha-2 country code such as GB")
        elif code in seen:
            violations.add(f"{path}[{index}]", "is listed twice")
        seen.add(code)


def check_time_zone(violations: Violations, path: str, time_zone: str) -> None:
    if not time_zone:
        violations.add(path, "required")
        return
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        violations.add(path, "must be an IANA time zone such as Europe/London")


def check_time_of_day(violations: Violations, path: str, hours: int, minutes: int,
                      seconds: int, nanos: int) -> None:
    if not (0 <= hours <= 23 and 0 <= minutes <= 59 and 0 <= seconds <= 59 and nanos == 0):
        violations.add(path, "must be a time of day between 00:00:00 and 23:59:59")


def check_service(violations: Violations, path: str, service: CarrierService) -> None:
    check_pattern(violations, f"{path}.code", service.code, SERVICE_CODE)
    check_text(violations, f"{path}.display_name", service.display_name)
    if service.service_level not in list(Level):
        violations.add(f"{path}.service_level", "required")
    if not 0 <= service.transit_days <= MAX_TRANSIT_DAYS:
        violations.add(f"{path}.transit_days", f"must be between 0 and {MAX_TRANSIT_DAYS}")
    if service.max_weight_grams < 0:
        violations.add(f"{path}.max_weight_grams", "must not be negative")
    check_countries(violations, f"{path}.origin_countries", sorted(service.origin_countries))
    check_countries(violations, f"{path}.destination_countries",
                    sorted(service.destination_countries))
    if service.service_level is Level.INTERNATIONAL and not service.international:
        violations.add(f"{path}.international", "must be set for an international service")


def check_services(violations: Violations, path: str,
                   services: Sequence[CarrierService]) -> None:
    if len(services) > MAX_SERVICES:
        violations.add(path, f"at most {MAX_SERVICES} services")
        return
    seen: dict[str, int] = {}
    for index, service in enumerate(services):
        check_service(violations, f"{path}[{index}]", service)
        if service.code in seen:
            violations.add(f"{path}[{index}].code", f"repeats {path}[{seen[service.code]}]")
        seen.setdefault(service.code, index)


def check_mask(violations: Violations, paths: Sequence[str],
               updatable: Sequence[str]) -> list[str]:
    """AIP-134: an empty mask or "*" changes every updatable field."""
    if not paths or list(paths) == ["*"]:
        return list(updatable)
    for path in paths:
        if path not in updatable:
            violations.add("update_mask", f"{path!r} cannot be updated; updatable: "
                           + ", ".join(updatable))
    return [path for path in paths if path in updatable]


MODES = (0, 1, 2)  # unset (table rate), table rate, karrio
TRACKING_SCHEMES = (0, 1, 2, 3, 4)
MAX_URL = 500


def check_carrier(violations: Violations, path: str, *, mode: int, karrio_carrier: str,
                  tracking_scheme: int, tracking_url_template: str, display_name: str,
                  services: Sequence[CarrierService], paths: set[str]) -> None:
    """The fields of a carrier an update names in ``paths`` (all of them on a create)."""
    if "display_name" in paths:
        check_text(violations, f"{path}.display_name", display_name)
    if "mode" in paths and mode not in MODES:
        violations.add(f"{path}.mode", "must be a CarrierMode")
    if "karrio_carrier" in paths or "mode" in paths:
        check_text(violations, f"{path}.karrio_carrier", karrio_carrier, 63)
        if mode == Mode.KARRIO and not karrio_carrier:
            violations.add(f"{path}.karrio_carrier", "required with CARRIER_MODE_KARRIO")
    if "tracking_scheme" in paths and tracking_scheme not in TRACKING_SCHEMES:
        violations.add(f"{path}.tracking_scheme", "must be a TrackingScheme")
    if "tracking_url_template" in paths:
        check_text(violations, f"{path}.tracking_url_template", tracking_url_template, MAX_URL)
        if tracking_url_template and "{tracking_number}" not in tracking_url_template:
            violations.add(f"{path}.tracking_url_template", "must contain {tracking_number}")
    if "services" in paths:
        check_services(violations, f"{path}.services", services)


def check_origin(violations: Violations, path: str, *, country: str, postal_code: str,
                 time_zone: str, carriers: Sequence[str], paths: set[str]) -> None:
    if "address" in paths:
        check_country(violations, f"{path}.address.region_code", country)
        if not postal_code:
            violations.add(f"{path}.address.postal_code", "required")
        check_text(violations, f"{path}.address.postal_code", postal_code, 20)
    if "time_zone" in paths:
        check_time_zone(violations, f"{path}.time_zone", time_zone)
    if "carriers" in paths:
        if len(carriers) > MAX_ORIGIN_CARRIERS:
            violations.add(f"{path}.carriers", f"at most {MAX_ORIGIN_CARRIERS} carriers")
        else:
            for index, carrier in enumerate(carriers):
                check_pattern(violations, f"{path}.carriers[{index}]", carrier, CARRIER_ID)
