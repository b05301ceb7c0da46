"""Inventory rules still shared by stock and allocation: order lines and the checks of a stock
movement. Plain Python, so the rules are tested without a server."""

from __future__ import annotations

import re
from dataclasses import dataclass

from oms_platform.errors import Violations

CHANNEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Line:
    line_id: str
    sku: str
    quantity: int


def check_delta(violations: Violations, path: str, delta: int) -> None:
    if delta == 0:
        violations.add(path, "must not be zero")


def check_channel(violations: Violations, path: str, channel: str) -> None:
    if not CHANNEL_PATTERN.fullmatch(channel):
        violations.add(path, f"must match {CHANNEL_PATTERN.pattern}")


def check_positive(violations: Violations, path: str, value: int) -> None:
    if value <= 0:
        violations.add(path, "must be more than zero")
