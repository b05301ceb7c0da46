"""The shared value types."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from oms_platform.values import LatLng, haversine_km, timestamp


def test_great_circle_distance_between_known_cities() -> None:
    reno, edison = LatLng(39.5296, -119.8138), LatLng(40.5187, -74.4121)
    assert haversine_km(reno, edison) == pytest.approx(3830, rel=0.01)
    assert haversine_km(reno, reno) == 0


def test_a_timestamp_keeps_the_instant() -> None:
    moment = datetime(2025, 11, 1, 12, 30, 15, 250000, tzinfo=UTC)
    assert timestamp(moment).ToDatetime(tzinfo=UTC) == moment
