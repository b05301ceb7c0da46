"""The test kit's parts that need no server: waiting on a probe, building an envelope."""

from __future__ import annotations

import uuid

import pytest
from oms.fulfilment.v1 import events_pb2 as fulfilment_events
from oms.inventory.v1 import events_pb2 as inventory_events
from oms.orders.v1 import events_pb2 as order_events
from oms_devtools.testkit import address, envelope_for, eventually, new_id
from oms_platform.telemetry import configure_tracing, tracer

FAST = {"timeout": 0.3, "interval": 0.01}


class Counter:
    """A probe answering ``answers`` one after another, then the last one for ever."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        return self.answers[min(self.calls, len(self.answers)) - 1]


async def test_a_sync_probe_is_polled_until_it_answers() -> None:
    probe = Counter(None, False, None, "ready")
    assert await eventually(probe, **FAST) == "ready"
    assert probe.calls == 4


async def test_an_async_probe_is_awaited() -> None:
    probe = Counter(None, {"status": "done"})

    async def check() -> object:
        return probe()

    assert await eventually(check, **FAST) == {"status": "done"}


@pytest.mark.parametrize("answer", [0, "", [], {}])
async def test_only_none_and_false_mean_not_yet(answer: object) -> None:
    probe = Counter(None, answer)
    assert await eventually(probe, **FAST) == answer
    assert probe.calls == 2


async def test_until_decides_and_the_value_is_returned() -> None:
    probe = Counter(1, 2, 3)
    assert await eventually(probe, until=lambda n: n >= 3, **FAST) == 3
    assert probe.calls == 3


async def test_a_timeout_says_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(AssertionError) as timed_out:
        await eventually(Counter(None, 41), until=lambda n: n == 42, what="the answer", **FAST)
    assert str(timed_out.value) == (
        "timed out after 0.3s waiting for the answer; last seen: 41")


async def test_a_timeout_names_the_probe_when_not_told_what() -> None:
    def stock_arrived() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"waiting for .*stock_arrived; last seen: False"):
        await eventually(stock_arrived, **FAST)


async def test_errors_to_retry_on_count_as_not_yet_and_others_end_the_wait() -> None:
    probe = Counter(ConnectionError("reset"), ConnectionError("reset"), "up")

    def check() -> object:
        answer = probe()
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await eventually(check, retry_on=(ConnectionError,), **FAST) == "up"

    def down() -> object:
        raise ConnectionError("refused")

    with pytest.raises(AssertionError, match=r"last seen: ConnectionError\('refused'\)"):
        await eventually(down, retry_on=(ConnectionError,), **FAST)
    with pytest.raises(ConnectionError):
        await eventually(down, **FAST)


def test_an_envelope_is_the_producers() -> None:
    event = inventory_events.StockAllocated(order=f"orders/{uuid.uuid4()}")
    envelope = envelope_for(event)

    headers = envelope.headers
    assert envelope.subject == "oms.inventory.stock_allocated"
    assert headers["ce-subject"] == event.order, "the aggregate is the event's order"
    assert headers["ce-source"] == "/oms/inventory"
    assert headers["ce-type"] == "oms.inventory.v1.StockAllocated"
    assert headers["ce-id"] == headers["Nats-Msg-Id"] == str(envelope.event_id)
    assert "traceparent" not in headers


def test_an_envelope_takes_its_options() -> None:
    event_id = uuid.uuid4()
    shipped = fulfilment_events.PackageShipped(package="fulfilmentOrders/1/packages/1")
    envelope = envelope_for(shipped, aggregate_id=shipped.package, partition="node-1",
                            source="/oms/tests", event_id=event_id)

    assert envelope.subject == "oms.fulfilment.package_shipped.node-1"
    assert envelope.event_id == event_id
    assert (envelope.headers["ce-subject"], envelope.headers["ce-source"]) == (
        shipped.package, "/oms/tests")


def test_an_event_without_an_order_needs_its_aggregate() -> None:
    with pytest.raises(TypeError, match="PackageShipped has no order field"):
        envelope_for(fulfilment_events.PackageShipped(package="p"))


def test_an_envelope_carries_the_current_trace() -> None:
    configure_tracing("testkit-tests")
    with tracer().start_as_current_span("produce") as span:
        envelope = envelope_for(order_events.OrderCreated(order="orders/1"))
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert envelope.headers["traceparent"].split("-")[1] == trace_id


def test_ids_are_random_and_addresses_complete() -> None:
    assert new_id("SKU").startswith("SKU-") and new_id("SKU") != new_id("SKU")
    reno = address((39.5, -119.8), administrative_area="NV")
    assert (reno.locality, reno.region_code, reno.administrative_area) == ("Town", "US", "NV")
    assert (reno.location.latitude, reno.location.longitude) == (39.5, -119.8)
    assert not address().HasField("location")
