"""The label RPCs: buy one or many (idempotent by request_id), read, list, print, void. A
mixin of the service's servicer, which provides ``self._sessions`` and ``self._settings``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog
from oms.shipping.v1 import shipping_pb2
from oms_platform import lists
from oms_platform.errors import DomainError, FieldViolation, InvalidArgument, NotFound, Violations
from oms_platform.grpc_errors import classify, to_status
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_shipping.carriers import store as carriers_store
from oms_shipping.documents import domain as documents
from oms_shipping.labels import convert, domain, store
from oms_shipping.labels.domain import LabelRequest, LabelState
from oms_shipping.rating.api import RatingCache
from oms_shipping.settings import ShippingSettings

log = structlog.get_logger(__name__)

LIST_KEY = (datetime, uuid.UUID)


class LabelsApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: ShippingSettings
    _rating: RatingCache

    async def CreateLabel(self, request: shipping_pb2.CreateLabelRequest,
                          context: grpc.aio.ServicerContext) -> shipping_pb2.Label:
        violations = Violations()
        wanted = convert.label_request(violations, "", request)
        domain.check_label_request(violations, "", wanted)
        violations.raise_if_any()
        return convert.label_message(await self._buy(wanted, request))

    async def BatchCreateLabels(self, request: shipping_pb2.BatchCreateLabelsRequest,
                                context: grpc.aio.ServicerContext
                                ) -> shipping_pb2.BatchCreateLabelsResponse:
        checks = [Violations() for _ in request.requests]
        wanted = [convert.label_request(checks[i], "", r)
                  for i, r in enumerate(request.requests[:domain.MAX_BATCH])]
        domain.check_batch(wanted, total=len(request.requests))
        results = []
        # One purchase after the other, each in its own transaction: a refused or failed
        # parcel is its own result and the others are bought all the same; a retry of the
        # whole batch finds the bought ones by their request ids.
        for index, (one, message) in enumerate(zip(wanted, request.requests, strict=True)):
            domain.check_label_request(checks[index], "", one)
            results.append(await self._batch_item(one, message, checks[index]))
        return shipping_pb2.BatchCreateLabelsResponse(results=results)

    async def _batch_item(self, wanted: LabelRequest, message: shipping_pb2.CreateLabelRequest,
                          violations: Violations) -> shipping_pb2.LabelResult:
        try:
            violations.raise_if_any()
            row = await self._buy(wanted, message)
        except DomainError as error:
            status = to_status(error)
            return shipping_pb2.LabelResult(request_id=wanted.request_id,
                                            error_code=status.code, error_message=status.message)
        except Exception as error:  # one parcel's failure is its own result
            failure = classify(error)
            log.warning("label purchase failed", request_id=wanted.request_id,
                        reason=failure.reason, exc_info=error)
            return shipping_pb2.LabelResult(request_id=wanted.request_id,
                                            error_code=failure.code,
                                            error_message=failure.message)
        return shipping_pb2.LabelResult(request_id=wanted.request_id,
                                        label=convert.label_message(row))

    async def _buy(self, wanted: LabelRequest,
                   message: shipping_pb2.CreateLabelRequest) -> Row[Any]:
        """The label of the request: the one bought before under its request_id, else a new
        one. The row is the purchase (a table-rate label is made here), inserted with its
        request_id unique: a concurrent twin waits on the insert and then returns the first
        label, so two labels are never bought."""
        rating = await self._rating.current(self._sessions)
        async with self._sessions.begin() as session:
            earlier = await store.label_by_request(session, wanted.request_id)
            if earlier is not None:
                return _replayed(earlier, wanted)
            origin = rating.origins.get(wanted.node_id)
            origin_row = await carriers_store.origin_by_id(session, wanted.node_id)
            if origin is None or origin_row is None:
                raise NotFound(f"no origin for node {wanted.node_id}",
                               metadata={"name": f"origins/{wanted.node_id}"})
            now = datetime.now(UTC)
            choice = domain.choose_service(wanted, origin, rating.carriers, rating.cards, now)
            carrier_id = choice.carrier.carrier_id
            await store.lock_day(session, carrier_id, wanted.node_id, closing=False)
            closed = await store.closed_days(session, carrier_id, wanted.node_id,
                                             choice.ship_date)
            bought = domain.purchase(choice, origin, wanted.destination.region_code,
                                     closed)
            fmt = domain.tracking_format(bought.carrier, origin,
                                         self._settings.ups_shipper_number)
            number = domain.tracking_number(fmt, await store.next_serial(session),
                                            bought.service.service_level.name)
            parcel = wanted.parcel
            row = await store.insert_label(session, {
                "id": uuid.uuid4(),
                "request_id": wanted.request_id,
                "package": wanted.package,
                "orders": list(wanted.orders),
                "node_id": wanted.node_id,
                "carrier": carrier_id,
                "service_code": bought.service.code,
                "service_name": bought.service.display_name or bought.service.code,
                "service_level": bought.service.service_level.name,
                "tracking_number": number,
                "tracking_url": domain.tracking_url(bought.carrier.tracking_url_template,
                                                    number),
                "cost": bought.cost.amount,
                "currency_code": bought.cost.currency_code,
                "state": LabelState.PURCHASED,
                "ship_date": bought.ship_date,
                "estimated_delivery_date": bought.delivery_date,
                "ship_from": origin_row.address,
                "destination": convert.address_json(message.destination),
                "residential": wanted.residential,
                "weight_grams": parcel.weight_grams,
                "length_mm": parcel.length_mm or None,
                "width_mm": parcel.width_mm or None,
                "height_mm": parcel.height_mm or None,
                "declared_value": parcel.declared_value.amount if parcel.declared_value else None,
                "declared_value_currency": (parcel.declared_value.currency_code
                                            if parcel.declared_value else None),
            })
            if row is not None:
                log.info("label bought", label=str(row.id), request_id=wanted.request_id,
                         carrier=carrier_id, tracking_number=number)
                return row
        # A concurrent twin committed first; this transaction bought nothing (its serial is
        # a gap in the sequence, which is harmless).
        async with self._sessions.begin() as session:
            first = await store.label_by_request(session, wanted.request_id)
        assert first is not None
        return _replayed(first, wanted)

    async def GetLabel(self, request: shipping_pb2.GetLabelRequest,
                       context: grpc.aio.ServicerContext) -> shipping_pb2.Label:
        return convert.label_message(await self._label(request.name))

    async def _label(self, name: str) -> Row[Any]:
        label_id = domain.require_label_name(name)
        async with self._sessions.begin() as session:
            row = await store.label_by_id(session, label_id)
        if row is None:
            raise NotFound(f"{name} not found", metadata={"name": name})
        return row

    async def ListLabels(self, request: shipping_pb2.ListLabelsRequest,
                         context: grpc.aio.ServicerContext) -> shipping_pb2.ListLabelsResponse:
        query = {"filter": request.filter}
        found, after, size = lists.parameters(request, query, LIST_KEY,
                                              fields=domain.LABEL_FILTER_FIELDS,
                                              max_page_size=domain.MAX_PAGE_SIZE)
        async with self._sessions.begin() as session:
            rows = await store.list_labels(session, found.conditions,
                                           after=(after[0], after[1]) if after else None,
                                           limit=size + 1)
        return shipping_pb2.ListLabelsResponse(
            labels=[convert.label_message(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.create_time, r.id],
                                                  query))

    async def GetLabelDocument(self, request: shipping_pb2.GetLabelDocumentRequest,
                               context: grpc.aio.ServicerContext) -> shipping_pb2.Document:
        if request.format not in (shipping_pb2.DOCUMENT_FORMAT_UNSPECIFIED,
                                  shipping_pb2.DOCUMENT_FORMAT_PDF,
                                  shipping_pb2.DOCUMENT_FORMAT_ZPL):
            violations = Violations()
            domain.parse_label_name(violations, "name", request.name)
            violations.add("format", "must be a DocumentFormat")
            violations.raise_if_any()
        row = await self._label(request.name)
        document = convert.label_document(row)
        if request.format == shipping_pb2.DOCUMENT_FORMAT_ZPL:
            return shipping_pb2.Document(content_type=documents.ZPL,
                                         content=documents.label_zpl(document))
        return shipping_pb2.Document(content_type=documents.PDF,
                                     content=documents.label_pdf(document))

    async def VoidLabel(self, request: shipping_pb2.VoidLabelRequest,
                        context: grpc.aio.ServicerContext) -> shipping_pb2.Label:
        label_id = domain.require_label_name(request.name)
        async with self._sessions.begin() as session:
            voided = await store.void_label(session, label_id)
            if voided is not None:
                log.info("label voided", label=str(label_id))
                return convert.label_message(voided)
            row = await store.label_by_id(session, label_id)
        if row is None:
            raise NotFound(f"{request.name} not found", metadata={"name": request.name})
        # Not PURCHASED: voided before (a retry, answered with the label) or manifested.
        domain.void(LabelState(row.state), request.name)
        return convert.label_message(row)


def _replayed(row: Row[Any], wanted: LabelRequest) -> Row[Any]:
    """A retry carries the package and node of the first request; a request_id reused for
    another parcel is refused rather than answered with someone else's label."""
    if (row.package, row.node_id) != (wanted.package, wanted.node_id):
        raise InvalidArgument([FieldViolation(
            "request_id", f"already used for {domain.label_name(row.id)}, a label of "
                          "another package")])
    return row

