"""Where an order goes when its address carries no coordinates.

A small built-in table, good enough to choose between warehouses hundreds of kilometres
apart: US states by their geographic centre, countries by a point near where most of their
people live (the geographic centre of Canada or Australia would route to empty land).
"""

from __future__ import annotations

from oms_platform.values import LatLng

US_STATES: dict[str, tuple[float, float]] = {
    "AL": (32.81, -86.79), "AK": (61.37, -152.40), "AZ": (34.27, -111.66),
    "AR": (34.89, -92.44), "CA": (37.18, -119.47), "CO": (39.00, -105.55),
    "CT": (41.62, -72.73), "DE": (38.99, -75.51), "DC": (38.90, -77.03),
    "FL": (28.63, -82.45), "GA": (32.64, -83.44), "HI": (20.29, -156.37),
    "ID": (44.35, -114.61), "IL": (40.04, -89.20), "IN": (39.89, -86.28),
    "IA": (42.08, -93.50), "KS": (38.49, -98.38), "KY": (37.53, -85.30),
    "LA": (31.07, -91.99), "ME": (45.37, -69.24), "MD": (39.06, -76.80),
    "MA": (42.26, -71.81), "MI": (44.35, -85.41), "MN": (46.28, -94.31),
    "MS": (32.74, -89.67), "MO": (38.46, -92.46), "MT": (47.05, -109.63),
    "NE": (41.54, -99.80), "NV": (39.33, -116.63), "NH": (43.68, -71.58),
    "NJ": (40.19, -74.67), "NM": (34.41, -106.11), "NY": (42.95, -75.53),
    "NC": (35.56, -79.39), "ND": (47.45, -100.47), "OH": (40.29, -82.79),
    "OK": (35.59, -97.49), "OR": (43.93, -120.56), "PA": (40.88, -77.80),
    "RI": (41.68, -71.56), "SC": (33.92, -80.90), "SD": (44.44, -100.23),
    "TN": (35.86, -86.35), "TX": (31.48, -99.33), "UT": (39.31, -111.67),
    "VT": (44.07, -72.67), "VA": (37.52, -78.85), "WA": (47.38, -120.45),
    "WV": (38.64, -80.62), "WI": (44.62, -89.99), "WY": (43.00, -107.55),
    "PR": (18.22, -66.59),
}

COUNTRIES: dict[str, tuple[float, float]] = {
    "US": (37.42, -92.14), "CA": (45.50, -76.00), "MX": (20.50, -100.50),
    "BR": (-18.00, -46.00), "AR": (-34.00, -61.00), "GB": (52.50, -1.50),
    "IE": (53.30, -7.70), "FR": (46.60, 2.40), "DE": (51.10, 10.40),
    "NL": (52.20, 5.30), "BE": (50.60, 4.60), "LU": (49.70, 6.10),
    "ES": (40.20, -3.60), "PT": (39.60, -8.00), "IT": (42.80, 12.50),
    "CH": (46.80, 8.20), "AT": (47.60, 14.10), "DK": (55.90, 10.40),
    "SE": (59.30, 16.00), "NO": (60.50, 9.00), "FI": (61.50, 25.00),
    "PL": (52.10, 19.40), "CZ": (49.80, 15.50), "JP": (35.70, 138.00),
    "KR": (36.50, 127.80), "CN": (32.00, 112.00), "IN": (22.00, 79.00),
    "SG": (1.35, 103.82), "AU": (-33.50, 147.00), "NZ": (-39.50, 175.00),
    "ZA": (-27.50, 27.00), "AE": (24.50, 54.70),
}


def centroid(region_code: str, administrative_area: str) -> LatLng | None:
    """A representative point of the state (US) or else the country, if known."""
    region = region_code.strip().upper()
    area = administrative_area.strip().upper()
    point = (US_STATES.get(area) if region == "US" else None) or COUNTRIES.get(region)
    return LatLng(*point) if point else None
