"""The inventory rules: which node ships an order, and what a valid product, node or
adjustment is. Plain Python, so the rules are tested without a server."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
class CandidateNode:
    """A node that holds enough available stock for a whole order."""

    node_id: str
    location: LatLng
    priority: int


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


def rank_nodes(candidates: Iterable[CandidateNode],
               destination: LatLng | None) -> list[CandidateNode]:
    """Nearest first; equally near (to the kilometre) or with no known destination, the
    lower priority, then the node id, so that the choice is always deterministic."""

    def key(node: CandidateNode) -> tuple[int, int, str]:
        distance = 0 if destination is None else round(haversine_km(node.location, destination))
        return distance, node.priority, node.node_id

    return sorted(candidates, key=key)


def quantities_by_sku(lines: Iterable[Line]) -> dict[str, int]:
    """Units needed per SKU; an order may hold several lines of one SKU."""
    needed: dict[str, int] = {}
    for line in lines:
        needed[line.sku] = needed.get(line.sku, 0) + line.quantity
    return needed


def reservation_order(lines: Sequence[Line]) -> list[Line]:
    """Lines in the order their stock rows are locked. Every transaction locks rows in SKU
    order, so two orders sharing SKUs can wait for each other but never deadlock."""
    return sorted(lines, key=lambda line: (line.sku, line.line_id))


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
