"""Small value types and their protobuf forms, the same in every service: a point on the
globe, and timestamps. (Money has its own module, :mod:`oms_platform.money`.)"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class LatLng:
    latitude: float
    longitude: float


def haversine_km(a: LatLng, b: LatLng) -> float:
    """Great-circle distance between two points."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlng = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlng / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def timestamp(moment: datetime) -> Timestamp:
    """The protobuf Timestamp of an aware datetime."""
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
