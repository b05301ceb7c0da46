"""Order lines, as allocation plans them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    line_id: str
    sku: str
    quantity: int
