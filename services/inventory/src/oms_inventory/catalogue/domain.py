"""What a valid product or fulfilment node is, the resource names of the service, and the
filter fields of the catalogue's lists. Plain Python, so the rules are tested without a
server."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from oms_platform import filtering as filters
from oms_platform.errors import FieldViolation, InvalidArgument, Violations
from oms_platform.money import check_money
from oms_platform.values import LatLng

SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NODE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
REGION_PATTERN = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
BIN_CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
GTIN_LENGTHS = (8, 12, 13, 14)
MAX_REQUEST_ID_LENGTH = 128
MAX_TITLE_LENGTH = 500
# What one request may carry; a node's bins are replaced as a whole, so MAX_BINS is also the
# most a node has.
MAX_BATCH = 1000
MAX_SERVICE_REGIONS = 500
MAX_BINS = 20_000
MAX_ADDRESS_LINES = 10

PRODUCT_NAME = re.compile(r"^products/([^/]+)$")
NODE_NAME = re.compile(r"^fulfilmentNodes/([^/]+)$")
EVERY = "-"

# The names of the NodeType and BackorderPolicy values without their prefixes.
NODE_TYPES = ("WAREHOUSE", "THIRD_PARTY_LOGISTICS", "DROPSHIP_SUPPLIER")
BACKORDER_POLICIES = ("ALLOW", "DENY", "ALLOW_UP_TO_LIMIT")

PRODUCT_FILTER_FIELDS = {
    "sku": filters.text(wildcard=True),
    "title": filters.text(wildcard=True),
    "gtin": filters.text("=", "!=", wildcard=True),
    "fragile": filters.boolean(),
    "hazardous": filters.boolean(),
    "returnable": filters.boolean(),
    "backorder_policy": filters.enum({v: v for v in BACKORDER_POLICIES}),
}
NODE_FILTER_FIELDS = {
    "type": filters.enum({v: v for v in NODE_TYPES}),
    "region": filters.text("=", wildcard=True),
}

# The fields an update mask may name.
PRODUCT_PATHS = (
    "title", "gtin", "weight", "dimensions", "fragile", "hazardous", "minimum_order_quantity",
    "returnable", "backorder_policy", "backorder_limit", "reorder_point",
    "supplier_lead_time_days",
)
NODE_PATHS = ("display_name", "type", "address", "priority", "service_regions", "cutoff_time",
              "time_zone", "shipment_cost", "bins")


@dataclass(frozen=True)
class Bin:
    bin_code: str
    zone: str
    walk_sequence: int


@dataclass(frozen=True)
class ProductFields:
    """The checked fields of a product message; `backorder_policy` None when unknown."""

    title: str
    gtin: str
    weight_grams: int
    dimensions: Mapping[str, int]
    counts: Mapping[str, int]
    backorder_policy: str | None
    backorder_limit: int


@dataclass(frozen=True)
class NodeFields:
    """The checked fields of a node message; `node_type` None when unset or unknown,
    `address_lines` None without an address, `cutoff` (h, m, s, nanos) and `shipment_cost`
    (currency, amount) None when not given."""

    node_type: str | None
    address_lines: Sequence[str] | None
    location: LatLng | None
    priority: int
    service_regions: Sequence[str]
    cutoff: tuple[int, int, int, int] | None
    time_zone: str
    shipment_cost: tuple[str, str] | None
    bins: Sequence[Bin]


def parse_name(pattern: re.Pattern[str], name: str, template: str,
               field: str = "name") -> tuple[str, ...]:
    match = pattern.fullmatch(name)
    if match is None:
        raise InvalidArgument([FieldViolation(field, f"must be {template}")])
    return match.groups()


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


def check_mask(violations: Violations, paths: Sequence[str],
               updatable: Sequence[str]) -> list[str]:
    """The fields an update changes: AIP-134, an empty mask or "*" means every one."""
    if not paths or list(paths) == ["*"]:
        return list(updatable)
    if len(paths) > len(updatable):
        violations.add("update_mask", f"at most {len(updatable)} paths")
        return []
    for path in paths:
        if path not in updatable:
            violations.add("update_mask", f"{path!r} cannot be updated; updatable: "
                           + ", ".join(updatable))
    return [path for path in paths if path in updatable]


def sku_of(violations: Violations, name: str, sku: str) -> str:
    """The SKU of a product in an update: from its `name` when set (and then `sku`, if given
    too, must agree), else `sku` itself."""
    found = _id_of(violations, PRODUCT_NAME, name, sku, "product", "sku", "products/{sku}")
    if found is None:
        return sku
    check_sku(violations, "product.sku", found)
    return found


def node_id_of(violations: Violations, name: str, node_id: str) -> str:
    """The id of a node in an update, as `sku_of` finds a product's."""
    found = _id_of(violations, NODE_NAME, name, node_id, "fulfilment_node", "node_id",
                   "fulfilmentNodes/{node_id}")
    if found is None:
        return node_id
    check_node_id(violations, "fulfilment_node.node_id", found)
    return found


def _id_of(violations: Violations, pattern: re.Pattern[str], name: str, given: str,
           message: str, id_field: str, template: str) -> str | None:
    """None when the name is not one of the pattern."""
    if not name:
        return given
    match = pattern.fullmatch(name)
    if match is None:
        violations.add(f"{message}.name", f"must be {template}")
        return None
    if given and given != match.group(1):
        violations.add(f"{message}.{id_field}", f"does not match {message}.name")
    return match.group(1)


def check_product(violations: Violations, path: str, product: ProductFields, *,
                  whole: bool = True) -> None:
    """The fields of a product; `whole` when the message is the whole product (not an update
    of some fields), so that rules across fields can be checked."""
    check_title(violations, f"{path}.title", product.title)
    check_gtin(violations, f"{path}.gtin", product.gtin)
    check_not_negative(violations, f"{path}.weight.grams", product.weight_grams)
    for dimension, value in product.dimensions.items():
        check_not_negative(violations, f"{path}.dimensions.{dimension}", value)
    for name, value in product.counts.items():
        check_not_negative(violations, f"{path}.{name}", value)
    if product.backorder_policy is None:
        violations.add(f"{path}.backorder_policy", "unknown policy")
    elif (whole and product.backorder_limit
          and product.backorder_policy != "ALLOW_UP_TO_LIMIT"):
        violations.add(f"{path}.backorder_limit", "only with BACKORDER_POLICY_ALLOW_UP_TO_LIMIT")


def check_node(violations: Violations, path: str, node: NodeFields, paths: set[str]) -> None:
    """The fields of a node being created (every path) or updated (the masked paths)."""
    if "type" in paths:
        violations.require(node.node_type in NODE_TYPES, f"{path}.type", "required")
    if "address" in paths and violations.require(node.address_lines is not None,
                                                 f"{path}.address", "required"):
        check_address_lines(violations, f"{path}.address.address_lines",
                            node.address_lines or ())
        check_location(violations, f"{path}.address.location", node.location)
    if "priority" in paths:
        check_not_negative(violations, f"{path}.priority", node.priority)
    if "service_regions" in paths:
        check_regions(violations, f"{path}.service_regions", node.service_regions)
    if "cutoff_time" in paths and node.cutoff is not None:
        check_time_of_day(violations, f"{path}.cutoff_time", *node.cutoff)
    if "time_zone" in paths:
        check_time_zone(violations, f"{path}.time_zone", node.time_zone)
    if "shipment_cost" in paths and node.shipment_cost is not None:
        check_money(violations, f"{path}.shipment_cost", *node.shipment_cost)
    if "bins" in paths:
        check_bins(violations, f"{path}.bins", node.bins)
