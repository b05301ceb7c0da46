"""The label RPCs: buy one or many (idempotent by request_id), read, list, print, void. A
mixin of the service's servicer, which provides ``self._sessions`` and ``self._settings``."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
import structlog
from oms.shipping.v1 import shipping_pb2
from oms_platform import lists
from oms_platform.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Violations,
)
from oms_platform.grpc_errors import classify, to_status
from oms_platform.money import Money
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_shipping.carrier_api import convert as carrier_convert
from oms_shipping.carrier_api.client import KarrioCarriers
from oms_shipping.carrier_api.domain import (
    CarrierUnavailable,
    LabelFormat,
    LabelPurchase,
    PurchasedLabel,
    RateQuery,
    compact_pdf,
)
from oms_shipping.carriers import store as carriers_store
from oms_shipping.carriers.domain import Carrier, CarrierService, Origin
from oms_shipping.documents import domain as documents
from oms_shipping.labels import convert, domain, store
from oms_shipping.labels.domain import LabelRequest, LabelState
from oms_shipping.rating import cards as rate_cards
from oms_shipping.rating import domain as rating_domain
from oms_shipping.rating import promise
from oms_shipping.rating.cards import Incoterm
from oms_shipping.rating.store import RatingCache
from oms_shipping.settings import KarrioSettings, ShippingSettings

log = structlog.get_logger(__name__)

LIST_KEY = (datetime, uuid.UUID)
UNKNOWN_CURRENCY = "XXX"


class LabelsApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: ShippingSettings
    _rating: RatingCache
    _carriers: KarrioCarriers
    _karrio: KarrioSettings

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
        remote = domain.karrio_service(wanted, rating.carriers)
        if remote is not None:
            return await self._buy_from_carrier(wanted, message, *remote,
                                                rating.origins.get(wanted.node_id))
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
                **_addresses(wanted, origin_row.address, message),
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

    async def _buy_from_carrier(self, wanted: LabelRequest,
                                message: shipping_pb2.CreateLabelRequest, carrier: Carrier,
                                service: CarrierService, origin: Origin | None) -> Row[Any]:
        """A karrio carrier's label, bought at most once per request_id: the purchase is
        claimed in a transaction of its own before the carrier is called, the label row
        written (and the claim dropped) in one transaction after it answered. See the README's
        "Real carriers (karrio)" for what each ending of the call leaves behind."""
        carrier_id = carrier.carrier_id
        async with self._sessions.begin() as session:
            earlier = await store.label_by_request(session, wanted.request_id)
            if earlier is not None:
                return _replayed(earlier, wanted)
            claim = await store.claim_by_request(session, wanted.request_id)
            if claim is not None:
                self._refuse_claimed(claim, wanted)
            origin_row = await carriers_store.origin_by_id(session, wanted.node_id)
            if origin is None or origin_row is None:
                raise NotFound(f"no origin for node {wanted.node_id}",
                               metadata={"name": f"origins/{wanted.node_id}"})
            first_day = _carrier_ship_date(wanted, carrier, service, origin)
            await store.lock_day(session, carrier_id, wanted.node_id, closing=False)
            closed = await store.closed_days(session, carrier_id, wanted.node_id, first_day)
            ship_date = domain.ship_date_after_closes(
                first_day, closed, domain.next_collection_day(origin, service))
            # The carrier's own estimate comes with its rates, not its labels: the label's
            # delivery date is the service's transit days from our carrier data.
            delivery_date = promise.delivery_date(ship_date, service.transit_days,
                                                        wanted.destination.region_code)
            if not self._karrio.configured(carrier.karrio_carrier):
                raise FailedPrecondition(
                    f"carrier {carrier_id} has no karrio account configured for "
                    f"{carrier.karrio_carrier!r}", reason="CARRIER_NOT_CONFIGURED",
                    metadata={"carrier": carrier_id})
            claimed = await store.insert_claim(session, {
                "request_id": wanted.request_id, "package": wanted.package,
                "node_id": wanted.node_id, "carrier": carrier_id,
                "service_code": service.code})
            if not claimed:
                # A twin claimed it between our look-up and our insert, and committed.
                raise domain.PurchaseInProgress(
                    f"the label of request {wanted.request_id} is being bought from "
                    f"{carrier_id}; retry shortly",
                    metadata={"request_id": wanted.request_id, "carrier": carrier_id})
        # Claimed and committed: from here on a retry is refused, never bought again.
        addresses = _addresses(wanted, origin_row.address, message)
        purchase = LabelPurchase(
            carrier=carrier.karrio_carrier, service_code=service.code,
            origin=carrier_convert.address_of(convert.address_message(addresses["ship_from"])),
            destination=carrier_convert.address_of(convert.address_message(addresses["destination"]),
                                                   residential=wanted.residential),
            parcels=carrier_convert.parcels_of((wanted.parcel,)),
            reference=wanted.request_id, ship_date=ship_date,
            duties_paid=wanted.incoterm is Incoterm.DDP)
        label = await self._call_carrier(wanted.request_id, carrier_id, purchase)
        number = label.tracking_number
        try:
            cost = label.price or await self._quoted_cost(purchase)
            document = label.label
            if label.label_format is LabelFormat.PDF:
                document = await asyncio.to_thread(compact_pdf, document)
            async with self._sessions.begin() as session:
                row = await store.insert_label(session, {
                    "id": uuid.uuid4(),
                    "request_id": wanted.request_id,
                    "package": wanted.package,
                    "orders": list(wanted.orders),
                    "node_id": wanted.node_id,
                    "carrier": carrier_id,
                    "service_code": service.code,
                    "service_name": service.display_name or service.code,
                    "service_level": service.service_level.name,
                    "tracking_number": number,
                    "tracking_url": domain.tracking_url(carrier.tracking_url_template, number),
                    "cost": cost.amount,
                    "currency_code": cost.currency_code,
                    "state": LabelState.PURCHASED,
                    "ship_date": ship_date,
                    "estimated_delivery_date": delivery_date,
                    **addresses,
                    "residential": wanted.residential,
                    "weight_grams": wanted.parcel.weight_grams,
                    "length_mm": wanted.parcel.length_mm or None,
                    "width_mm": wanted.parcel.width_mm or None,
                    "height_mm": wanted.parcel.height_mm or None,
                    "declared_value": (wanted.parcel.declared_value.amount
                                       if wanted.parcel.declared_value else None),
                    "declared_value_currency": (wanted.parcel.declared_value.currency_code
                                                if wanted.parcel.declared_value else None),
                    "carrier_label": document,
                    "carrier_label_format": label.label_format.value,
                    "carrier_shipment_id": label.shipment_identifier,
                })
                if row is None:
                    # A table-rate label took the request_id meanwhile (a request_id reused
                    # for another service): this one was bought all the same.
                    raise domain.PurchaseUncertain(
                        f"request {wanted.request_id} got another label while {carrier_id} "
                        f"sold {number}; void {number} with the carrier",
                        metadata={"request_id": wanted.request_id, "carrier": carrier_id})
                await store.release_claim(session, wanted.request_id)
        except BaseException as error:
            # Bought and not recorded: the claim is held UNCERTAIN with the carrier's numbers
            # (or, with the database gone, stays BUYING and is read as uncertain once stale),
            # and they are logged, so an operator can void or record the label.
            log.error("karrio label bought but not recorded", request_id=wanted.request_id,
                      carrier=carrier_id, tracking_number=number,
                      shipment_identifier=label.shipment_identifier, exc_info=error)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._uncertain(
                    wanted.request_id, f"bought {number} (shipment "
                                       f"{label.shipment_identifier}), not recorded: {error}"))
            raise
        log.info("label bought from the carrier", label=str(row.id),
                 request_id=wanted.request_id, carrier=carrier_id, tracking_number=number)
        return row

    def _refuse_claimed(self, claim: Row[Any], wanted: LabelRequest) -> None:
        if (claim.package, claim.node_id) != (wanted.package, wanted.node_id):
            raise InvalidArgument([FieldViolation(
                "request_id", "already used for a label of another package")])
        stale_after = timedelta(seconds=self._karrio.timeout_seconds) + domain.CLAIM_GRACE
        domain.check_claim(claim.state, claim.now - claim.create_time, stale_after,
                           request_id=wanted.request_id, carrier=claim.carrier,
                           detail=claim.detail)

    async def _call_carrier(self, request_id: str, carrier_id: str,
                            purchase: LabelPurchase) -> PurchasedLabel:
        """The carrier's label. When the call certainly bought nothing the claim is released
        (a retry buys afresh); when it may have, the claim is left UNCERTAIN and the request
        refused until an operator settles it."""
        try:
            return await self._carriers.buy_label(purchase)
        except CarrierUnavailable as error:
            if not error.maybe_executed:
                await self._release(request_id)
                raise
            await self._uncertain(request_id, error.message)
            log.warning("karrio label purchase uncertain", request_id=request_id,
                        carrier=carrier_id, error=error.message)
            raise domain.PurchaseUncertain(
                f"{error.message}; the carrier may have bought a label for request "
                f"{request_id}: it is not bought again until an operator settles it",
                metadata={"request_id": request_id, "carrier": carrier_id}) from error
        except DomainError:
            # Refused, invalid, unsupported or not configured: the carrier sold nothing.
            await self._release(request_id)
            raise
        except BaseException as error:
            # An answer we could not read, or the caller gone mid-call: it may have bought.
            await asyncio.shield(self._uncertain(request_id, f"{type(error).__name__}: "
                                                             f"{error}"))
            raise

    async def _release(self, request_id: str) -> None:
        async with self._sessions.begin() as session:
            await store.release_claim(session, request_id)

    async def _uncertain(self, request_id: str, detail: str) -> None:
        async with self._sessions.begin() as session:
            await store.mark_uncertain(session, request_id, detail)

    async def _quoted_cost(self, purchase: LabelPurchase) -> Money:
        """What the carrier quotes for the service, for a label sold without a price. The
        label is bought whatever happens here, so a failed quote records the cost as unknown
        (0 in ISO 4217's "no currency", XXX) rather than losing the label."""
        try:
            rates = await self._carriers.rate(RateQuery(
                purchase.carrier, purchase.origin, purchase.destination, purchase.parcels,
                service_codes=(purchase.service_code,), ship_date=purchase.ship_date))
            return rates[0].total
        except Exception as error:
            log.warning("no price for a carrier's label", carrier=purchase.carrier,
                        reference=purchase.reference, exc_info=error)
            return Money.of(UNKNOWN_CURRENCY, 0)

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
        if row.carrier_label is not None:
            wanted = {shipping_pb2.DOCUMENT_FORMAT_PDF: "PDF",
                      shipping_pb2.DOCUMENT_FORMAT_ZPL: "ZPL"}.get(request.format, "")
            given = domain.stored_document(row.carrier_label_format, wanted)
            return shipping_pb2.Document(
                content_type=documents.ZPL if given == "ZPL" else documents.PDF,
                content=bytes(row.carrier_label))
        document = convert.label_document(row)
        if request.format == shipping_pb2.DOCUMENT_FORMAT_ZPL:
            return shipping_pb2.Document(content_type=documents.ZPL,
                                         content=documents.label_zpl(document))
        return shipping_pb2.Document(content_type=documents.PDF,
                                     content=documents.label_pdf(document))

    async def VoidLabel(self, request: shipping_pb2.VoidLabelRequest,
                        context: grpc.aio.ServicerContext) -> shipping_pb2.Label:
        label_id = domain.require_label_name(request.name)
        current = await self._label(request.name)
        if current.carrier_shipment_id is not None and current.state == LabelState.PURCHASED:
            await self._void_at_carrier(current)
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


    async def _void_at_carrier(self, row: Row[Any]) -> None:
        """Voids a karrio label at its carrier before it is marked voided here: a carrier
        that cannot void (DHL Express through karrio) or refuses (collected already) leaves
        the label as it is, with the carrier's reason."""
        rating = await self._rating.current(self._sessions)
        carrier = next((c for c in rating.carriers if c.carrier_id == row.carrier), None)
        if carrier is None or not carrier.karrio_carrier:
            raise FailedPrecondition(
                f"carrier {row.carrier} of {domain.label_name(row.id)} is no karrio carrier "
                "any more; void it with the carrier", reason="CARRIER_NOT_CONFIGURED",
                metadata={"carrier": row.carrier})
        await self._carriers.void_label(carrier.karrio_carrier, row.carrier_shipment_id)
        log.info("label voided at the carrier", label=str(row.id), carrier=row.carrier)


def _carrier_ship_date(wanted: LabelRequest, carrier: Carrier, service: CarrierService,
                       origin: Origin) -> date:
    """The first day the named karrio service can take the parcel from the origin, by our
    carrier data (countries, weight limit, cut-off, pickup days, holidays)."""
    shipment = rating_domain.Shipment(
        rate_cards.Destination(wanted.destination.region_code,
                               wanted.destination.postal_code, wanted.residential),
        (wanted.parcel,), ready_time=datetime.now(UTC), incoterm=wanted.incoterm)
    reason = rating_domain.service_ineligible(shipment, origin, carrier, service)
    if not reason:
        try:
            return promise.ship_date(shipment.ready_time, origin, service)
        except rate_cards.NotRated as error:
            reason = str(error)
    raise domain.NoEligibleService(f"{service.code} cannot take this parcel: {reason}",
                                   metadata={"node_id": origin.node_id})


def _replayed(row: Row[Any], wanted: LabelRequest) -> Row[Any]:
    """A retry carries the package and node of the first request; a request_id reused for
    another parcel is refused rather than answered with someone else's label."""
    if (row.package, row.node_id) != (wanted.package, wanted.node_id):
        raise InvalidArgument([FieldViolation(
            "request_id", f"already used for {domain.label_name(row.id)}, a label of "
                          "another package")])
    return row


def _addresses(wanted: LabelRequest, origin: dict[str, Any],
               message: shipping_pb2.CreateLabelRequest) -> dict[str, dict[str, Any]]:
    """The label row's `ship_from` and `destination`: swapped for a return label."""
    ship_from, ship_to = domain.label_addresses(wanted, origin,
                                                convert.address_json(message.destination))
    return {"ship_from": ship_from, "destination": ship_to}
