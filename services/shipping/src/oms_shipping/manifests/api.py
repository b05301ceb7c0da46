"""The manifest RPCs: close a carrier's day at a node (idempotent by request_id), read,
list, print. A mixin of the service's servicer, which provides ``self._sessions`` and
``self._rating``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import structlog
from oms.shipping.v1 import shipping_pb2
from oms_platform import lists
from oms_platform.errors import FieldViolation, InvalidArgument, NotFound, Violations
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_shipping.documents import domain as documents
from oms_shipping.labels import store as label_store
from oms_shipping.manifests import convert, domain, store
from oms_shipping.rating.api import RatingCache

log = structlog.get_logger(__name__)

LIST_KEY = (datetime, uuid.UUID)


class ManifestsApi:
    _sessions: async_sessionmaker[AsyncSession]
    _rating: RatingCache

    async def CloseManifest(self, request: shipping_pb2.CloseManifestRequest,
                            context: grpc.aio.ServicerContext) -> shipping_pb2.Manifest:
        violations = Violations()
        domain.check_close(violations, request.request_id, request.carrier, request.node_id)
        violations.raise_if_any()
        async with self._sessions.begin() as session:
            earlier = await store.manifest_by_request(session, request.request_id)
            if earlier is None:
                rating = await self._rating.current(self._sessions)
                origin = rating.origins.get(request.node_id)
                if origin is None:
                    raise NotFound(f"no origin for node {request.node_id}",
                                   metadata={"name": f"origins/{request.node_id}"})
                if not any(c.carrier_id == request.carrier for c in rating.carriers):
                    raise NotFound(f"carrier {request.carrier} not found",
                                   metadata={"name": f"carriers/{request.carrier}"})
                # Alone on the carrier's day at the node: no label is bought for the day
                # while it closes, and two closes do not interleave.
                await label_store.lock_day(session, request.carrier, request.node_id,
                                           closing=True)
                day = domain.closing_day(origin, datetime.now(UTC))
                already = await store.day_closed(session, request.carrier, request.node_id, day)
                created = await store.insert_manifest(session, {
                    "id": uuid.uuid4(), "request_id": request.request_id,
                    "carrier": request.carrier, "node_id": request.node_id, "ship_date": day})
                if created is not None:
                    row = await store.take_open_labels(session, created.id, request.carrier,
                                                       request.node_id, day, domain.MAX_LABELS)
                    # Raising rolls the empty manifest back with everything else.
                    domain.check_not_empty_again(row.parcel_count, already, request.carrier,
                                                 request.node_id, day)
                    log.info("manifest closed", manifest=str(row.id), carrier=row.carrier,
                             node_id=row.node_id, parcels=row.parcel_count)
                else:
                    row = await store.manifest_by_request(session, request.request_id)
            else:
                row = earlier
            assert row is not None
            if (row.carrier, row.node_id) != (request.carrier, request.node_id):
                raise InvalidArgument([FieldViolation(
                    "request_id", f"already used to close {row.carrier} at {row.node_id}")])
            ids = await store.label_ids(session, [row.id])
        return convert.manifest_message(row, ids[row.id])

    async def GetManifest(self, request: shipping_pb2.GetManifestRequest,
                          context: grpc.aio.ServicerContext) -> shipping_pb2.Manifest:
        manifest_id = domain.require_manifest_name(request.name)
        async with self._sessions.begin() as session:
            row = await store.manifest_by_id(session, manifest_id)
            if row is None:
                raise NotFound(f"{request.name} not found", metadata={"name": request.name})
            ids = await store.label_ids(session, [manifest_id])
        return convert.manifest_message(row, ids[manifest_id])

    async def ListManifests(self, request: shipping_pb2.ListManifestsRequest,
                            context: grpc.aio.ServicerContext
                            ) -> shipping_pb2.ListManifestsResponse:
        query = {"filter": request.filter}
        found, after, size = lists.parameters(request, query, LIST_KEY,
                                              fields=domain.MANIFEST_FILTER_FIELDS,
                                              max_page_size=domain.MAX_PAGE_SIZE)
        async with self._sessions.begin() as session:
            rows = await store.list_manifests(session, found.conditions,
                                              after=(after[0], after[1]) if after else None,
                                              limit=size + 1)
            ids = await store.label_ids(session, [row.id for row in rows[:size]])
        return shipping_pb2.ListManifestsResponse(
            manifests=[convert.manifest_message(row, ids[row.id]) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.create_time, r.id],
                                                  query))

    async def GetManifestDocument(self, request: shipping_pb2.GetManifestDocumentRequest,
                                  context: grpc.aio.ServicerContext) -> shipping_pb2.Document:
        manifest_id = domain.require_manifest_name(request.name)
        async with self._sessions.begin() as session:
            row = await store.manifest_by_id(session, manifest_id)
            if row is None:
                raise NotFound(f"{request.name} not found", metadata={"name": request.name})
            label_rows = await store.manifest_labels(session, manifest_id)
        return shipping_pb2.Document(
            content_type=documents.PDF,
            content=documents.manifest_pdf(convert.manifest_document(row, label_rows)))
