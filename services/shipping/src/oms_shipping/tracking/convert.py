"""Tracking events and parcels as messages, and the events tracking publishes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from google.protobuf.message import Message
from google.type import date_pb2
from oms.shipping.v1 import events_pb2, shipping_pb2
from oms_platform.values import timestamp

from oms_shipping.tracking.domain import (
    EventDraft,
    LabelRef,
    Progress,
    Recorded,
    Scan,
    TrackingStatus,
)

PREFIX = "TRACKING_STATUS_"


def status_proto(status: TrackingStatus) -> int:
    return shipping_pb2.TrackingStatus.Value(PREFIX + status.value)


def status_of(value: int) -> TrackingStatus | None:
    """The domain's status of an enum value; None for a number outside the enum."""
    if value not in shipping_pb2.TrackingStatus.values():
        return None
    return TrackingStatus(shipping_pb2.TrackingStatus.Name(value).removeprefix(PREFIX))


def draft(event: shipping_pb2.TrackingEvent) -> EventDraft:
    return EventDraft(
        carrier=event.carrier,
        tracking_number=event.tracking_number,
        carrier_code=event.carrier_code,
        status=status_of(event.status),
        event_time=(event.event_time.ToDatetime(tzinfo=UTC)
                    if event.HasField("event_time") else None),
        location=event.location,
        description=event.description,
    )


def label_name(label: LabelRef) -> str:
    return f"labels/{label.id}"


def event(scan: Scan) -> shipping_pb2.TrackingEvent:
    return shipping_pb2.TrackingEvent(
        carrier=scan.carrier, tracking_number=scan.tracking_number,
        carrier_code=scan.carrier_code, status=status_proto(scan.status),
        event_time=timestamp(scan.event_time), location=scan.location,
        description=scan.description)


def tracking(label: LabelRef, scans: Sequence[Scan]) -> shipping_pb2.Tracking:
    message = shipping_pb2.Tracking(
        label=label_name(label), carrier=label.carrier, tracking_number=label.tracking_number,
        status=status_proto(label.parcel.status), events=[event(s) for s in scans])
    if label.estimated_delivery_date is not None:
        day = label.estimated_delivery_date
        message.estimated_delivery_date.CopyFrom(
            date_pb2.Date(year=day.year, month=day.month, day=day.day))
    return message


def recorded(result: Recorded) -> shipping_pb2.RecordTrackingEventsResponse:
    return shipping_pb2.RecordTrackingEventsResponse(
        recorded=result.recorded, duplicates=result.duplicates,
        unknown_tracking_numbers=result.unknown)


_PROBLEMS = {
    TrackingStatus.DELIVERY_FAILED: "Delivery attempt failed",
    TrackingStatus.EXCEPTION: "Delivery exception",
    TrackingStatus.RETURNED_TO_SENDER: "Returned to sender",
}


def description(scan: Scan) -> str:
    """The carrier's words, or ours when it sent none."""
    if scan.description:
        return scan.description
    words = _PROBLEMS.get(scan.status, scan.status.value.replace("_", " ").capitalize())
    return f"{words} ({scan.carrier_code})" if scan.carrier_code else words


def events(progress: Sequence[tuple[LabelRef, Progress]]) -> list[tuple[Message, str]]:
    """The events of what new tracking events did, each with its label as aggregate: per
    parcel, its exceptions in journey order, then its progress or its delivery."""
    messages: list[tuple[Message, str]] = []
    for label, change in progress:
        common = dict(package=label.package, orders=list(label.orders), carrier=label.carrier,
                      tracking_number=label.tracking_number)
        name = label_name(label)
        for problem in change.exceptions:
            messages.append((events_pb2.DeliveryException(
                **common, description=description(problem),
                exception_time=timestamp(problem.event_time)), name))
        if change.progressed is not None:
            messages.append((events_pb2.ShipmentProgressed(
                **common, status=shipping_pb2.TrackingStatus.Name(status_proto(change.status)),
                description=description(change.progressed),
                event_time=timestamp(change.progressed.event_time)), name))
        if change.delivered is not None:
            messages.append((events_pb2.ShipmentDelivered(
                **common, deliver_time=timestamp(change.delivered.event_time)), name))
    return messages
