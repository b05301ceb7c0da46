"""The streams' limits, against a real JetStream."""

from __future__ import annotations

import pytest
from nats.js.api import DiscardPolicy, StreamConfig
from oms_platform import bus
from oms_platform.config import ServiceSettings
from platform_testkit import Bus

DAY = 24 * 3600.0


async def test_a_stream_is_created_with_its_limits(private_bus: Bus) -> None:
    js = private_bus.js
    await bus.ensure_stream(js, "probe", max_age_seconds=2 * DAY, max_bytes=64 << 20)

    config = (await js.stream_info("OMS_PROBE")).config
    assert (config.max_age, config.max_bytes, config.discard) == (2 * DAY, 64 << 20,
                                                                  DiscardPolicy.OLD)
    assert config.subjects == ["oms.probe.>"]
    assert config.duplicate_window == bus.DUPLICATE_WINDOW_SECONDS


async def test_an_existing_stream_without_limits_gets_them_and_keeps_its_messages(
    private_bus: Bus,
) -> None:
    js = private_bus.js
    await js.add_stream(StreamConfig(name="OMS_PROBE", subjects=["oms.probe.>"]))
    await js.publish("oms.probe.thing_happened", b"{}")

    await bus.ensure_stream(js, "probe")

    info = await js.stream_info("OMS_PROBE")
    assert (info.config.max_age, info.config.max_bytes) == (bus.STREAM_MAX_AGE_SECONDS,
                                                            bus.STREAM_MAX_BYTES)
    assert info.state.messages == 1


def test_the_limits_are_settings_with_a_week_and_a_gibibyte_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMS_DATABASE_URL", "postgresql+psycopg://unused/unused")
    defaults = ServiceSettings()  # type: ignore[call-arg]
    assert (defaults.stream_max_age_seconds, defaults.stream_max_bytes) == (7 * DAY, 1 << 30)

    monkeypatch.setenv("OMS_STREAM_MAX_AGE_SECONDS", "3600")
    monkeypatch.setenv("OMS_STREAM_MAX_BYTES", "1048576")
    configured = ServiceSettings()  # type: ignore[call-arg]
    assert (configured.stream_max_age_seconds, configured.stream_max_bytes) == (3600, 1 << 20)
