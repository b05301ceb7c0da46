"""The inventory rules: distances, and what a valid product, node or adjustment is. Plain
Python, so the rules are tested without a server."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from oms_platform.errors import Violations

EARTH_RADIUS_KM = 6371.0088
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NODE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
GTIN_LENGTHS = (8, 12, 13, 14)
MAX_REQUEST_ID_LENGTH = 128


@dataclass(frozen=True)
class LatLng:
    latitude: float
    longitude: float


@dataclass(frozen=True)
class Line:
    line_id: str
    sku: str
    quantity: int


def haversine_km(a: LatLng, b: LatLng) -> float:
    """Great-circle distance between two points."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlng = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlng / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def check_sku(violations: Violations, path: str, sku: str) -> None:
    if not sku:
        violations.add(path, "required")
    elif not SKU_PATTERN.fullmatch(sku):
        violations.add(path, f"must match {SKU_PATTERN.pattern}")


def check_node_id(violations: Violations, path: str, node_id: str) -> None:
    if not node_id:
        violations.add(path, "required")
    elif not NODE_ID_PATTERN.fullmatch(node_id):
        violations.add(path, f"must match {NODE_ID_PATTERN.pattern}")


def check_location(violations: Violations, path: str, location: LatLng | None) -> None:
    if location is None:
        violations.add(path, "required: nodes are routed by their position")
        return
    if not (math.isfinite(location.latitude) and -90.0 <= location.latitude <= 90.0):
        violations.add(f"{path}.latitude", "must be between -90 and 90")
    if not (math.isfinite(location.longitude) and -180.0 <= location.longitude <= 180.0):
        violations.add(f"{path}.longitude", "must be between -180 and 180")


def check_gtin(violations: Violations, path: str, gtin: str) -> None:
    """An optional GTIN-8/12/13/14 with a valid check digit."""
    if not gtin:
        return
    if not gtin.isdigit() or len(gtin) not in GTIN_LENGTHS:
        violations.add(path, "must be 8, 12, 13 or 14 digits")
        return
    digits = [int(d) for d in gtin]
    body = reversed(digits[:-1])
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(body))
    if (10 - total % 10) % 10 != digits[-1]:
        violations.add(path, "check digit does not match")


def check_not_negative(violations: Violations, path: str, value: int) -> None:
    if value < 0:
        violations.add(path, "must not be negative")


def check_request_id(violations: Violations, path: str, request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        violations.add(path, f"must be at most {MAX_REQUEST_ID_LENGTH} characters")


def check_delta(violations: Violations, path: str, delta: int) -> None:
    if delta == 0:
        violations.add(path, "must not be zero")


REGION_PATTERN = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
BIN_CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
CHANNEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MAX_TITLE_LENGTH = 500
# What one request may carry; a node's bins are replaced as a whole, so MAX_BINS is also the
# most a node has.
MAX_SERVICE_REGIONS = 500
MAX_BINS = 20_000
MAX_ADDRESS_LINES = 10


def check_title(violations: Violations, path: str, title: str) -> None:
    if len(title) > MAX_TITLE_LENGTH:
        violations.add(path, f"must be at most {MAX_TITLE_LENGTH} characters")


def check_regions(violations: Violations, path: str, regions: Sequence[str]) -> None:
    """ISO 3166-1 alpha-2 countries or ISO 3166-2 subdivisions ("US", "US-CA")."""
    if len(regions) > MAX_SERVICE_REGIONS:
        violations.add(path, f"at most {MAX_SERVICE_REGIONS} regions")
        return
    seen: set[str] = set()
    for index, region in enumerate(regions):
        if not REGION_PATTERN.fullmatch(region):
            violations.add(f"{path}[{index}]", "must be a region code like US or US-CA")
        elif region in seen:
            violations.add(f"{path}[{index}]", "is listed twice")
        seen.add(region)


def check_time_zone(violations: Violations, path: str, time_zone: str) -> None:
    if not time_zone:
        return
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        violations.add(path, "must be an IANA time zone such as Europe/Berlin")


def check_time_of_day(violations: Violations, path: str, hours: int, minutes: int,
                      seconds: int, nanos: int) -> None:
    if not (0 <= hours <= 23 and 0 <= minutes <= 59 and 0 <= seconds <= 59 and nanos == 0):
        violations.add(path, "must be a time of day between 00:00:00 and 23:59:59")


@dataclass(frozen=True)
class Bin:
    bin_code: str
    zone: str
    walk_sequence: int


def check_bins(violations: Violations, path: str, bins: Sequence[Bin]) -> None:
    if len(bins) > MAX_BINS:
        violations.add(path, f"at most {MAX_BINS} bins")
        return
    seen: set[str] = set()
    for index, bin_ in enumerate(bins):
        if not BIN_CODE_PATTERN.fullmatch(bin_.bin_code):
            violations.add(f"{path}[{index}].bin_code", f"must match {BIN_CODE_PATTERN.pattern}")
        elif bin_.bin_code in seen:
            violations.add(f"{path}[{index}].bin_code", "is listed twice")
        seen.add(bin_.bin_code)
        if not bin_.zone or len(bin_.zone) > 64:
            violations.add(f"{path}[{index}].zone", "required, at most 64 characters")
        check_not_negative(violations, f"{path}[{index}].walk_sequence", bin_.walk_sequence)


def check_address_lines(violations: Violations, path: str, lines: Sequence[str]) -> None:
    if len(lines) > MAX_ADDRESS_LINES:
        violations.add(path, f"at most {MAX_ADDRESS_LINES} lines")


def check_channel(violations: Violations, path: str, channel: str) -> None:
    if not CHANNEL_PATTERN.fullmatch(channel):
        violations.add(path, f"must match {CHANNEL_PATTERN.pattern}")


def check_positive(violations: Violations, path: str, value: int) -> None:
    if value <= 0:
        violations.add(path, "must be more than zero")
