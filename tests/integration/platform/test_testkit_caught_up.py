"""The test kit's wait for a consumer, against a real JetStream: a filtered consumer's ack
floor stops at the last message it read, and the wait must neither hang on the messages of
other subjects behind it nor end before the consumer's own are acknowledged."""

from __future__ import annotations

import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from oms.orders.v1 import events_pb2
from oms_devtools.testkit import caught_up, publish
from oms_platform.events import subject_filter, subject_for
from platform_testkit import ORDERS_STREAM, Bus, order_created

READER = "created-reader"


async def test_caught_up_follows_the_acks_of_a_filtered_consumer(private_bus: Bus) -> None:
    js = private_bus.js
    created_type = events_pb2.OrderCreated
    await js.add_consumer(ORDERS_STREAM, ConsumerConfig(
        durable_name=READER, ack_policy=AckPolicy.EXPLICIT,
        filter_subjects=[subject_for(created_type), subject_filter(created_type)]))
    reader = await js.pull_subscribe_bind(READER, stream=ORDERS_STREAM)
    created = await publish(js, order_created())
    cancelled = await publish(js, events_pb2.OrderCancelled(order=created.headers["ce-subject"]))
    assert (created.ack.seq, cancelled.ack.seq) == (1, 2)

    with pytest.raises(AssertionError, match=(
            f"{READER} to acknowledge OMS_ORDERS through #2; "
            r"last seen: '#1 not acknowledged .* 1 not delivered")):
        await caught_up(js, READER, ORDERS_STREAM, timeout=0.3)
    [message] = await reader.fetch(1)
    with pytest.raises(AssertionError, match=r"last seen: '#1 not acknowledged .* 1 awaiting"):
        await caught_up(js, READER, created, timeout=0.3)

    await message.ack_sync()
    await caught_up(js, READER, created)
    await caught_up(js, READER, ORDERS_STREAM)
    info = await js.consumer_info(ORDERS_STREAM, READER)
    assert info.ack_floor.stream_seq == 1, "the floor stays at the reader's last message"
    with pytest.raises(AssertionError, match=f"{READER} does not read #2 of OMS_ORDERS"):
        await caught_up(js, READER, cancelled)
