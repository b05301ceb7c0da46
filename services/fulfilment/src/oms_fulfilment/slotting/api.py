"""Slotting's gRPC methods: BatchSetSlots and ListSlots."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from oms.fulfilment.v1 import fulfilment_pb2
from oms_platform import lists
from oms_platform.errors import Violations
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_fulfilment.fulfilment_orders.convert import stamp
from oms_fulfilment.tables import fulfilment_order_lines, fulfilment_orders, slots

MAX_SLOTS = 1000
MAX_CODE = 100


class SlottingApi:
    _sessions: async_sessionmaker[AsyncSession]

    async def BatchSetSlots(
        self, request: fulfilment_pb2.BatchSetSlotsRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.BatchSetSlotsResponse:
        violations = Violations()
        violations.require(0 < len(request.slots) <= MAX_SLOTS, "slots",
                           f"between 1 and {MAX_SLOTS} slots")
        seen: set[tuple[str, str]] = set()
        for i, slot in enumerate(request.slots[:MAX_SLOTS]):
            for name in ("node_id", "sku", "bin_code"):
                value = getattr(slot, name)
                violations.require(0 < len(value) <= MAX_CODE and lists.is_storable_text(value),
                                   f"slots[{i}].{name}", f"required, at most {MAX_CODE} characters")
            violations.require((slot.node_id, slot.sku) not in seen, f"slots[{i}].sku",
                               "given twice for the node")
            seen.add((slot.node_id, slot.sku))
        violations.raise_if_any()
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            statement = pg_insert(slots).values([
                {"node_id": s.node_id, "sku": s.sku, "bin_code": s.bin_code, "update_time": now}
                for s in request.slots])
            await session.execute(statement.on_conflict_do_update(
                index_elements=[slots.c.node_id, slots.c.sku],
                set_={"bin_code": statement.excluded.bin_code,
                      "update_time": statement.excluded.update_time},
                where=slots.c.bin_code != statement.excluded.bin_code))
            # Lines waiting for a slot take it; lines already slotted keep their bin (their
            # units may be on a list already).
            slotted = 0
            for s in request.slots:
                result = await session.execute(update(fulfilment_order_lines).where(
                    fulfilment_order_lines.c.sku == s.sku,
                    fulfilment_order_lines.c.bin_code.is_(None),
                    fulfilment_order_lines.c.fulfilment_order_id.in_(
                        select(fulfilment_orders.c.id).where(
                            fulfilment_orders.c.node_id == s.node_id)))
                    .values(bin_code=s.bin_code))
                slotted += result.rowcount  # type: ignore[attr-defined]
            stored = (await session.execute(select(slots).where(
                slots.c.node_id.in_({s.node_id for s in request.slots}),
                slots.c.sku.in_({s.sku for s in request.slots})))).all()
        return fulfilment_pb2.BatchSetSlotsResponse(
            slots=[_slot(row) for row in stored if (row.node_id, row.sku) in seen],
            lines_slotted=slotted)

    async def ListSlots(
        self, request: fulfilment_pb2.ListSlotsRequest, context: grpc.aio.ServicerContext,
    ) -> fulfilment_pb2.ListSlotsResponse:
        violations = Violations()
        violations.require(bool(request.node_id), "node_id", "required")
        query = {"node_id": request.node_id}
        _, after, size = lists.parameters(request, query, (str,), violations=violations)
        async with self._sessions.begin() as session:
            statement = select(slots).where(slots.c.node_id == request.node_id)
            if after:
                statement = statement.where(slots.c.sku > after[0])
            rows = (await session.execute(statement.order_by(slots.c.sku).limit(size + 1))).all()
        return fulfilment_pb2.ListSlotsResponse(
            slots=[_slot(r) for r in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.sku], query))


def _slot(row: object) -> fulfilment_pb2.Slot:
    return fulfilment_pb2.Slot(node_id=row.node_id, sku=row.sku,  # type: ignore[attr-defined]
                               bin_code=row.bin_code,  # type: ignore[attr-defined]
                               update_time=stamp(row.update_time))  # type: ignore[attr-defined]
