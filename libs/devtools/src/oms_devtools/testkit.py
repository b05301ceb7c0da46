"""What the integration and end-to-end tests share to drive the suite from outside.

- `eventually`: wait on a condition, never on a fixed sleep.
- `publish` (`envelope_for`): an event into JetStream as its producer's relay would send it.
- `caught_up`: a service's durable consumer has handled everything up to a point.
- `new_id`, `address`, `add_node`, `add_sku`: inventory test data through its public API,
  with random ids so that tests never share state.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from google.protobuf.message import Message
from google.type import latlng_pb2
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, PubAck
from nats.js.errors import NotFoundError
from oms.common.v1 import common_pb2
from oms.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from oms_platform.events import Envelope, encode, producing_service
from oms_platform.telemetry import inject_headers

__all__ = [
    "RENO",
    "Published",
    "add_node",
    "add_sku",
    "address",
    "caught_up",
    "envelope_for",
    "eventually",
    "new_id",
    "publish",
]

T = TypeVar("T")
NotYet = Literal[False] | None  # what a probe answers while its condition does not hold

TIMEOUT = 30.0
# Short enough that a wait ends soon after its condition holds, long enough that a few
# dozen waits polling a database at once stay cheap on a two-core machine.
INTERVAL = 0.05


# --- waiting -----------------------------------------------------------------------------


@overload
async def eventually(
    probe: Callable[[], Awaitable[T | NotYet] | T | NotYet], *, until: None = None,
    timeout: float = ..., interval: float = ..., what: str | None = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], Awaitable[T] | T], *, until: Callable[[T], object],
    timeout: float = ..., interval: float = ..., what: str | None = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    *,
    until: Callable[[Any], object] | None = None,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    what: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """Calls ``probe`` (a function or a coroutine function) every ``interval`` seconds until
    its value is done, and returns that value.

    Done is ``until(value)`` when ``until`` is given. Without it a probe says "not yet" with
    ``None`` or ``False`` and anything else is its answer: ``0``, ``""`` or ``[]`` end the
    wait like any other value, so a probe that finds an empty result can return it, and
    one that is not ready must say so.

    An exception of a type in ``retry_on`` (a connection the server just closed, say) counts
    as "not yet"; any other ends the wait at once. After ``timeout`` seconds the wait fails
    with an ``AssertionError`` naming ``what`` was awaited (the probe's name by default) and
    the last value or exception the probe gave, which is usually why.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
        except retry_on as error:
            last: object = error
        else:
            done = until(value) if until is not None else value is not None and value is not False
            if done:
                return value
            last = value
        if loop.time() >= deadline:
            awaited = what or getattr(probe, "__qualname__", repr(probe))
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {awaited}; last seen: {last!r}")
        await asyncio.sleep(interval)


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published(Envelope):
    """An event as it went out (its envelope, with the headers really sent) and JetStream's
    acknowledgement: the stream and sequence it was stored at, or that it was a duplicate.
    Being an envelope, it can be published again as it is."""

    ack: PubAck


def envelope_for(
    message: Message,
    *,
    aggregate_id: str | None = None,
    partition: str | None = None,
    source: str | None = None,
    event_id: uuid.UUID | None = None,
) -> Envelope:
    """The envelope the producing service's outbox would give ``message``: CloudEvents
    headers, ``Nats-Msg-Id`` = the event id (random unless given), the current trace context.

    ``aggregate_id`` (``ce-subject``) defaults to the message's ``order`` field, which most
    events of this suite have; a message without one needs it given. ``source`` defaults to
    the producer's, ``/oms/<service>``.
    """
    if aggregate_id is None:
        order = message.DESCRIPTOR.fields_by_name.get("order")
        if order is None or order.type != order.TYPE_STRING:
            raise TypeError(f"{message.DESCRIPTOR.full_name} has no order field: "
                            "pass aggregate_id")
        aggregate_id = getattr(message, order.name)
    return encode(message, aggregate_id=aggregate_id, partition=partition,
                  source=source or f"/oms/{producing_service(message)}", event_id=event_id,
                  trace_headers=inject_headers())


async def publish(
    js: JetStreamContext,
    event: Message | Envelope,
    *,
    aggregate_id: str | None = None,
    partition: str | None = None,
    source: str | None = None,
    event_id: uuid.UUID | None = None,
    msg_id: str | None = None,
) -> Published:
    """Publishes ``event`` to JetStream as its producer's relay would: a message in the
    envelope of `envelope_for` (same options), or an envelope as it is (the same event again,
    which JetStream drops as a duplicate within its window).

    ``event_id`` repeats an event under its id; ``msg_id`` replaces the ``Nats-Msg-Id`` alone,
    as a copy published again after JetStream's duplicate window has (the stream stores it,
    and only the consumer's inbox can tell it is the same event).
    """
    if isinstance(event, Envelope):
        if (aggregate_id, partition, source, event_id) != (None, None, None, None):
            raise TypeError("an envelope is published as it is: options are for a message")
        envelope = event
    else:
        envelope = envelope_for(event, aggregate_id=aggregate_id, partition=partition,
                                source=source, event_id=event_id)
    headers = {**envelope.headers, **({"Nats-Msg-Id": msg_id} if msg_id else {})}
    ack = await js.publish(envelope.subject, envelope.payload, headers=headers)
    return Published(event_id=envelope.event_id, subject=envelope.subject, headers=headers,
                     payload=envelope.payload, ack=ack)


async def caught_up(
    js: JetStreamContext,
    consumer: str,
    through: str | PubAck | Published,
    *,
    timeout: float = TIMEOUT,
) -> None:
    """Waits until the durable ``consumer`` has acknowledged every message it reads up to
    ``through``: a stream's name (up to its last message when this is called), or one
    publish (up to that message, in its stream; the consumer must read that message).
    The services acknowledge after their transaction commits, so whatever those messages
    were going to change has changed by then.

    Judged by the consumer's ack floor (every message up to it is acknowledged), and where
    the floor is short of the mark, by asking the stream whether any message past the floor
    and up to the mark passes the consumer's filter. The floor alone is not enough: a
    filtered consumer's floor stops at the last message it read, so messages of other
    subjects at the end of the stream would keep it short forever. Nor are the pending
    counts: they can read zero for a moment after a message is stored.
    """
    if isinstance(through, str):
        stream, mark = through, (await js.stream_info(through)).state.last_seq
    else:
        ack = through.ack if isinstance(through, Published) else through
        stream, mark = ack.stream, ack.seq
        filters = _filters(await js.consumer_info(stream, consumer))
        if await _next_read(js, stream, filters, mark) != mark:
            raise AssertionError(f"{consumer} does not read #{mark} of {stream} ({filters})")

    async def lag() -> str | None:
        info = await js.consumer_info(stream, consumer)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if floor >= mark:
            return None
        unacknowledged = await _next_read(js, stream, _filters(info), floor + 1)
        if unacknowledged is None or unacknowledged > mark:
            return None
        return (f"#{unacknowledged} not acknowledged (ack floor #{floor}, "
                f"{info.num_ack_pending} awaiting an ack, {info.num_pending} not delivered)")

    await eventually(lag, until=lambda behind: behind is None, timeout=timeout,
                     what=f"{consumer} to acknowledge {stream} through #{mark}")


def _filters(info: ConsumerInfo) -> list[str]:
    config = info.config
    return list(config.filter_subjects or []) or [config.filter_subject or ">"]


async def _next_read(js: JetStreamContext, stream: str, filters: list[str],
                     start: int) -> int | None:
    """The sequence of the first message at or after ``start`` that one of the filters takes."""
    found: list[int] = []
    for subject in filters:
        with contextlib.suppress(NotFoundError):  # no such message
            found.append(int((await js.get_msg(stream, seq=start, subject=subject,
                                               next=True)).seq or 0))
    return min(found, default=None)


# --- inventory test data -----------------------------------------------------------------

InventoryStub = inventory_pb2_grpc.InventoryServiceStub

RENO = (39.5296, -119.8138)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def address(location: tuple[float, float] | None = None, **fields: Any) -> common_pb2.Address:
    """A complete US address (``fields`` override its parts), at ``location`` (latitude,
    longitude) when one is given."""
    result = common_pb2.Address(**{
        "recipient": "Ada", "address_lines": ["1 Main St"], "locality": "Town",
        "postal_code": "00000", "region_code": "US", **fields})
    if location is not None:
        result.location.CopyFrom(latlng_pb2.LatLng(latitude=location[0], longitude=location[1]))
    return result


async def add_node(stub: InventoryStub, location: tuple[float, float] | None = RENO,
                   **fields: Any) -> str:
    """Creates a fulfilment node and returns its id. ``fields`` are `FulfilmentNode` fields
    (``priority``, ``service_regions``, ``shipment_cost``, ...) over the defaults: a random
    id, named after itself, a warehouse, with an `address` at ``location``."""
    node = inventory_pb2.FulfilmentNode(**{
        "node_id": new_id("node"), "type": inventory_pb2.NODE_TYPE_WAREHOUSE,
        "address": address(location), **fields})
    node.display_name = node.display_name or node.node_id
    await stub.CreateFulfilmentNode(inventory_pb2.CreateFulfilmentNodeRequest(
        fulfilment_node=node))
    return node.node_id


async def add_sku(stub: InventoryStub, stock: Mapping[str, int] | None = None,
                  **fields: Any) -> str:
    """Creates a product and returns its SKU, then receives ``stock`` (node id -> units;
    nodes given 0 are left alone). ``fields`` are `Product` fields (``backorder_policy``,
    ``reorder_point``, ...) over the defaults: a random SKU, titled after itself."""
    product = inventory_pb2.Product(**{"sku": new_id("SKU"), **fields})
    product.title = product.title or product.sku
    await stub.CreateProduct(inventory_pb2.CreateProductRequest(product=product))
    for node_id, units in (stock or {}).items():
        if units:
            await stub.AdjustStock(inventory_pb2.AdjustStockRequest(
                node_id=node_id, sku=product.sku, delta=units,
                reason=inventory_pb2.ADJUSTMENT_REASON_RECEIPT))
    return product.sku
