"""What the inventory catalogue and stock tests share: the service over real gRPC, PostgreSQL
and NATS, an event collector reading the service's stream, and request helpers. Nodes, SKUs
and addresses come from the test kit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import grpc
import nats
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from oms.inventory.v1 import events_pb2, inventory_pb2, inventory_pb2_grpc
from oms_devtools.inprocess import running_service
from oms_devtools.testkit import eventually
from oms_inventory.app import MIGRATIONS, definition
from oms_inventory.settings import InventorySettings
from oms_platform import bus
from oms_platform.events import decode, event_type
from oms_platform.service import Service
from sqlalchemy import create_engine, func, select

Stub = inventory_pb2_grpc.InventoryServiceStub
STREAM = "OMS_INVENTORY"

EVENT_TYPES = {event_type(t): t for t in (
    events_pb2.ProductChanged, events_pb2.StockLevelChanged, events_pb2.ReorderPointReached,
    events_pb2.StockAllocated, events_pb2.StockBackordered, events_pb2.AllocationFailed,
    events_pb2.StockReleased,
)}


class StreamReader:
    """Reads the service's stream in order and knows how far it has read, so that a test can
    wait until every event the service has committed so far has arrived (see `caught_up`):
    only then does the absence of an event mean that none was published."""

    def __init__(self, service: Service, js: JetStreamContext) -> None:
        self.last_sequence = 0
        self._service = service
        self._js = js

    async def on_message(self, msg: Msg) -> None:
        self.last_sequence = max(self.last_sequence, msg.metadata.sequence.stream)
        self.take(msg)

    def take(self, msg: Msg) -> None:
        raise NotImplementedError

    async def wait(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        await eventually(condition, timeout=timeout)

    async def caught_up(self, timeout: float = 30.0) -> None:
        """Every event in the outbox when this is called has been published and read here.
        Call it after what should have produced events has committed (a call returned, the
        consumers settled): the relay publishes in outbox order, so an event missing then was
        never written."""
        await outbox_drained(self._service, timeout)
        last = (await self._js.stream_info(STREAM)).state.last_seq
        await self.wait(lambda: self.last_sequence >= last, timeout)


async def outbox_drained(service: Service, timeout: float = 30.0) -> None:
    """Waits until the relay has published every outbox row."""
    assert service.runtime is not None
    runtime = service.runtime
    outbox = runtime.metadata.tables["outbox"]
    pending = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))

    async def unpublished() -> int:
        async with runtime.engine.connect() as conn:
            return int(await conn.scalar(pending) or 0)

    await eventually(unpublished, until=lambda n: n == 0, timeout=timeout,
                     what="the relay to publish every outbox row")


@dataclass(frozen=True)
class Received:
    subject: str
    aggregate: str
    event: Message


class Events(StreamReader):
    """Every event the service publishes, in stream order."""

    def __init__(self, service: Service, js: JetStreamContext) -> None:
        super().__init__(service, js)
        self.received: list[Received] = []

    def take(self, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        if headers.get("ce-type") in EVENT_TYPES:
            event = decode(headers, msg.data, EVENT_TYPES.values())
            self.received.append(Received(msg.subject, headers["ce-subject"], event))

    def of(self, kind: type[Message], aggregate: str) -> list[Message]:
        return [r.event for r in self.received
                if isinstance(r.event, kind) and r.aggregate == aggregate]

    async def wait_for(self, kind: type[Message], aggregate: str, count: int = 1,
                       timeout: float = 30.0) -> list[Message]:
        """Waits until `count` events of the kind for the aggregate have arrived."""
        await self.wait(lambda: len(self.of(kind, aggregate)) >= count, timeout)
        return self.of(kind, aggregate)

    async def settle(self, kind: type[Message], aggregate: str,
                     predicate: Callable[[Message], bool]) -> Message:
        """The first event of the kind for the aggregate that satisfies the predicate."""
        await self.wait(lambda: any(predicate(e) for e in self.of(kind, aggregate)))
        return next(e for e in self.of(kind, aggregate) if predicate(e))


@pytest.fixture(scope="module")
def database_url(database_factory) -> str:  # type: ignore[no-untyped-def]
    return str(database_factory("inventory"))


@pytest.fixture(scope="module")
def inventory_settings() -> InventorySettings:
    """The settings the module's service runs with; a module overrides the fixture for others."""
    # The safety-net sweep of backorders runs every few seconds in production; quicker here.
    return InventorySettings(backorder_sweep_interval_seconds=0.5)


@pytest.fixture(scope="module")
async def service(database_url: str, nats_url: str,
                  inventory_settings: InventorySettings) -> AsyncIterator[Service]:
    async with running_service(definition(inventory_settings), MIGRATIONS,
                               database_url=database_url, nats_url=nats_url) as service:
        yield service


@pytest.fixture(scope="module")
async def stub(service: Service) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.bound_port}") as channel:
        yield Stub(channel)


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    client: Client = await nats.connect(nats_url)
    js = client.jetstream()
    for producer in ("orders", "fulfilment", "returns"):
        await bus.ensure_stream(js, producer)
    yield js
    await client.drain()


@pytest.fixture(scope="module")
async def events(service: Service, js: JetStreamContext) -> AsyncIterator[Events]:
    collector = Events(service, js)
    subscription = await js.subscribe("oms.inventory.>", stream=STREAM,
                                      cb=collector.on_message, ordered_consumer=True)
    yield collector
    await subscription.unsubscribe()


@pytest.fixture
def sync_engine(database_url: str) -> Iterator[object]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


async def receive(stub: Stub, node_id: str, lines: list[tuple[str, int]],
                  reference: str = "PO-1", request_id: str = ""
                  ) -> inventory_pb2.ReceiveStockResponse:
    return await stub.ReceiveStock(inventory_pb2.ReceiveStockRequest(
        parent=f"fulfilmentNodes/{node_id}", reference=reference,
        lines=[inventory_pb2.ReceiptLine(sku=sku, quantity=q) for sku, q in lines],
        request_id=request_id))


async def adjust(stub: Stub, node_id: str, sku: str, delta: int,
                 reason: int = inventory_pb2.ADJUSTMENT_REASON_CORRECTION
                 ) -> inventory_pb2.StockLevel:
    return await stub.AdjustStock(inventory_pb2.AdjustStockRequest(
        node_id=node_id, sku=sku, delta=delta, reason=reason))  # type: ignore[arg-type]


def level_name(node_id: str, sku: str) -> str:
    return f"fulfilmentNodes/{node_id}/stockLevels/{sku}"


async def level(stub: Stub, node_id: str, sku: str) -> inventory_pb2.StockLevel:
    return await stub.GetStockLevel(inventory_pb2.GetStockLevelRequest(
        name=level_name(node_id, sku)))


async def refused(call: object) -> tuple[grpc.StatusCode, list[tuple[str, str]], str]:
    """The status code, the BadRequest field violations and the message of a failed call."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    status = rpc_status.from_call(raised.value)
    violations: list[tuple[str, str]] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [(v.field, v.description) for v in bad_request.field_violations]
    return raised.value.code(), violations, raised.value.details() or ""


def fields(violations: list[tuple[str, str]]) -> list[str]:
    return [field for field, _ in violations]

