"""The inventory rules, without a server: distance, validation."""

from __future__ import annotations

import pytest
from oms.inventory.v1 import inventory_pb2
from oms_inventory.allocation import domain as geo
from oms_inventory.catalogue import convert, domain
from oms_inventory.catalogue.domain import check_gtin, check_location, check_node_id, check_sku
from oms_inventory.stock.domain import check_delta
from oms_platform.errors import FieldViolation, InvalidArgument, Violations
from oms_platform.values import LatLng, haversine_km

LOS_ANGELES = LatLng(34.0522, -118.2437)
NEW_YORK = LatLng(40.7128, -74.0060)
RENO = LatLng(39.5296, -119.8138)
NEWARK = LatLng(40.7357, -74.1724)

def test_los_angeles_to_new_york_is_about_3940_km() -> None:
    assert haversine_km(LOS_ANGELES, NEW_YORK) == pytest.approx(3940, abs=10)


def test_distance_is_symmetric_and_zero_to_itself() -> None:
    assert haversine_km(RENO, NEWARK) == pytest.approx(haversine_km(NEWARK, RENO))
    assert haversine_km(RENO, RENO) == 0


def test_antipodes_are_half_the_earth_apart() -> None:
    assert haversine_km(LatLng(0, 0), LatLng(0, 180)) == pytest.approx(20015, abs=5)


def test_geo_centroid_by_state_then_country() -> None:
    california = geo.centroid("US", "ca")
    assert california is not None and haversine_km(california, LOS_ANGELES) < 500
    assert geo.centroid("us", "") == LatLng(*geo.COUNTRIES["US"])
    assert geo.centroid("CA", "ON") == LatLng(*geo.COUNTRIES["CA"])
    assert geo.centroid("DE", "BY") == LatLng(*geo.COUNTRIES["DE"])
    assert geo.centroid("ZZ", "") is None
    assert geo.centroid("", "NY") is None


def test_geo_table_holds_valid_coordinates() -> None:
    for lat, lng in [*geo.US_STATES.values(), *geo.COUNTRIES.values()]:
        assert -90 <= lat <= 90 and -180 <= lng <= 180
    assert len(geo.US_STATES) >= 51 and len(geo.COUNTRIES) >= 25


@pytest.mark.parametrize("sku", ["A", "sku-1", "SKU_1.blue", "0" * 64])
def test_valid_skus(sku: str) -> None:
    violations = Violations()
    check_sku(violations, "sku", sku)
    assert violations.items == []


@pytest.mark.parametrize("sku", ["", "-a", ".a", "a b", "a/b", "0" * 65, "ü"])
def test_invalid_skus(sku: str) -> None:
    violations = Violations()
    check_sku(violations, "product.sku", sku)
    assert [v.field for v in violations.items] == ["product.sku"]


@pytest.mark.parametrize("node_id", ["a", "us-west-1", "0" * 63])
def test_valid_node_ids(node_id: str) -> None:
    violations = Violations()
    check_node_id(violations, "node_id", node_id)
    assert violations.items == []


@pytest.mark.parametrize("node_id", ["", "-a", "US-west", "a_b", "a.b", "0" * 64])
def test_invalid_node_ids(node_id: str) -> None:
    violations = Violations()
    check_node_id(violations, "node_id", node_id)
    assert [v.field for v in violations.items] == ["node_id"]


def test_location_is_required_and_bounded() -> None:
    path = "fulfilment_node.address.location"
    violations = Violations()
    check_location(violations, path, None)
    check_location(violations, path, LatLng(90.5, -181))
    check_location(violations, path, LatLng(float("nan"), 0))
    check_location(violations, path, LatLng(-90, 180))
    assert [v.field for v in violations.items] == [
        path, f"{path}.latitude", f"{path}.longitude", f"{path}.latitude",
    ]


@pytest.mark.parametrize(("gtin", "valid"), [
    ("", True),
    ("4006381333931", True),
    ("036000291452", True),
    ("96385074", True),
    ("4006381333932", False),
    ("40063813339", False),
    ("400638133393X", False),
])
def test_gtin_lengths_and_check_digit(gtin: str, valid: bool) -> None:
    violations = Violations()
    check_gtin(violations, "product.gtin", gtin)
    assert (violations.items == []) is valid


def test_every_violation_is_reported_at_once() -> None:
    violations = Violations()
    check_node_id(violations, "node_id", "Bad Node")
    check_sku(violations, "sku", "")
    check_delta(violations, "delta", 0)
    with pytest.raises(InvalidArgument) as raised:
        violations.raise_if_any()
    assert [v.field for v in raised.value.violations] == ["node_id", "sku", "delta"]
    assert FieldViolation("sku", "required") in raised.value.violations


def test_the_catalogues_names_of_types_policies_and_paths_are_the_contracts() -> None:
    def names(enum: object, prefix: str) -> set[str]:
        return {name.removeprefix(prefix) for name in enum.keys()  # type: ignore[attr-defined]
                if not name.endswith("_UNSPECIFIED")}

    assert set(domain.NODE_TYPES) == names(inventory_pb2.NodeType, "NODE_TYPE_")
    assert set(domain.BACKORDER_POLICIES) == names(inventory_pb2.BackorderPolicy,
                                                   "BACKORDER_POLICY_")
    assert tuple(convert.PRODUCT_COLUMNS) == domain.PRODUCT_PATHS
    assert tuple(convert.NODE_COLUMNS) == domain.NODE_PATHS
