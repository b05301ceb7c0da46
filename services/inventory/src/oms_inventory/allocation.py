"""Allocation, routing and backorders. Helper I2 builds this module; the function below is the
agreed entry point that stock movements call, implemented by I2."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession


async def serve_backorders(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> None:
    """Serves the backorder queues of the SKUs whose available stock may have grown at these
    (node_id, sku) levels, in the caller's transaction."""
    # Coordination placeholder while helper I2 writes the backorder queue; I2 replaces it.
    return None
