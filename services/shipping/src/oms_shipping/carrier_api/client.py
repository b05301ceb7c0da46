"""Calls to the carriers through karrio's SDK: ``Rating.fetch``, ``Shipment.create``,
``Shipment.cancel``, ``Tracking.fetch`` on a gateway per carrier plugin.

Karrio is blocking (urllib) and sets no socket timeout, so every call runs in a thread pool
of the carrier's own, bounded by ``concurrency``, and is awaited at most ``timeout_seconds``.
A carrier that hangs therefore holds at most its own few threads until it lets go, never the
event loop's default executor or another carrier's calls; a call still queued when its time
is up is cancelled before it starts.

Karrio turns every exception of a call into a ``Message`` (``SHIPPING_SDK_INTERNAL_ERROR``),
which would hide a refused connection among parser failures. Each gateway's proxy is
therefore a subclass whose methods re-raise network failures as ``_TransportFailure``, an
error carrying our own code, which karrio copies into the message; ``domain.failure`` reads
it back as ``CarrierUnavailable``. The subclass defines exactly the methods the plugin's own
proxy defines, as karrio reads a plugin's capabilities from them.

A gateway is made per call (microseconds, once the plugins are loaded), because karrio's
tracer keeps every request and answer it traced for the gateway's lifetime; the carrier's
cache (UPS's OAuth token) is kept for the client's lifetime. Loading the plugins takes
seconds the first time; ``open()`` does it ahead, outside any call's timeout.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import socket
import urllib.error
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from oms_shipping.carrier_api import domain
from oms_shipping.carrier_api.domain import (
    CarrierNotConfigured,
    CarrierRate,
    CarrierTracking,
    CarrierUnavailable,
    LabelPurchase,
    PurchasedLabel,
    RateQuery,
)
from oms_shipping.settings import KarrioSettings

if TYPE_CHECKING:
    import karrio.lib as klib

log = structlog.get_logger(__name__)


@functools.cache
def _karrio() -> ModuleType:
    """karrio's SDK, imported on the first carrier call or plugin load of the process rather
    than with this module: importing karrio takes seconds, and a service whose catalogue
    has no karrio carrier (or no account for one) never calls it."""
    import karrio.sdk
    from karrio.core.utils.logger import logger

    # Karrio logs through its own colourised stderr sink, tracebacks included; we log each
    # failed call once, structured, ourselves.
    logger.disable("karrio")
    return karrio.sdk

T = TypeVar("T")


class _TransportFailure(Exception):
    code = domain.TRANSPORT_FAILURE

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        cause = error.reason if isinstance(error, urllib.error.URLError) else error
        # Refused or unresolved: the request never left, so nothing happened at the carrier.
        never_sent = isinstance(cause, ConnectionRefusedError | socket.gaierror)
        self.details = {"maybe_executed": not never_sent}


def _guarded(proxy_type: type) -> type:
    def guard(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
                raise _TransportFailure(error) from error
        return call

    import karrio.references

    methods = {
        name: guard(getattr(proxy_type, name))
        for name in karrio.references.detect_proxy_methods(proxy_type)
        if callable(getattr(proxy_type, name))
    }
    return type(proxy_type.__name__, (proxy_type,), methods)


def _with_server_url(settings_type: type, url: str) -> type:
    return type(settings_type.__name__, (settings_type,),
                {"server_url": property(lambda _self: url.rstrip("/"))})


class KarrioCarriers:
    """The carriers with a karrio plugin and an account in ``KarrioSettings``."""

    def __init__(self, settings: KarrioSettings) -> None:
        self._settings = settings
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._caches: dict[str, klib.Cache] = {}
        self._proxies: dict[str, type] = {}
        self._settings_types: dict[str, type] = {}
        self._loaded = False
        self._loading = asyncio.Lock()

    # -- the interface -------------------------------------------------------------------

    async def open(self) -> None:
        """Loads karrio's plugins (seconds, once per process)."""
        async with self._loading:
            if not self._loaded:
                await asyncio.to_thread(lambda: _karrio().gateway.providers)
                self._loaded = True

    async def rate(self, query: RateQuery) -> list[CarrierRate]:
        """Every rate the carrier quotes for the parcels (only ``query.service_codes`` when
        given), in its currency. A carrier that answers with no rate at all refuses."""
        domain.check_parcels(query.carrier, query.parcels)
        request = domain.to_rate_request(query)

        def call(gateway: Any) -> tuple[Any, list[Any]]:
            return _karrio().Rating.fetch(request).from_(gateway).parse()

        rates, messages = await self._call(query.carrier, "rating", call, executes=False)
        ours = [r for r in (domain.from_rate_details(rate) for rate in rates or []) if r]
        if not ours:
            raise domain.failure(query.carrier, "rating", messages)
        wanted = set(query.service_codes)
        return [r for r in ours if not wanted or r.service_code in wanted]

    async def buy_label(self, purchase: LabelPurchase) -> PurchasedLabel:
        """Buys one label for the parcels. Not idempotent at the carrier: the caller keeps
        its own request id, and on ``CarrierUnavailable(maybe_executed=True)`` reconciles
        before buying again."""
        domain.check_parcels(purchase.carrier, purchase.parcels)
        request = domain.to_shipment_request(purchase)

        def call(gateway: Any) -> tuple[Any, list[Any]]:
            return _karrio().Shipment.create(request).from_(gateway).parse()

        details, messages = await self._call(purchase.carrier, "labels", call, executes=True)
        if details is None:
            raise domain.failure(purchase.carrier, "labels", messages)
        notes = [m for m in domain.from_messages(messages)]
        return domain.from_shipment_details(details, notes)

    async def void_label(self, carrier: str, shipment_identifier: str) -> None:
        """Voids a label the carrier has not collected yet; refused once it has."""
        request = domain.to_cancel_request(shipment_identifier)

        def call(gateway: Any) -> tuple[Any, list[Any]]:
            return _karrio().Shipment.cancel(request).from_(gateway).parse()

        confirmation, messages = await self._call(carrier, "void", call, executes=True)
        if confirmation is None or not confirmation.success:
            raise domain.failure(carrier, "void", messages)

    async def track(self, carrier: str, tracking_numbers: Sequence[str]) -> list[CarrierTracking]:
        """The carrier's tracking of each number it knows; numbers it does not know are left
        out, and when it knows none the call is refused with its messages."""
        domain.check_tracking_numbers(carrier, tracking_numbers)
        request = domain.to_tracking_request(tracking_numbers)

        def call(gateway: Any) -> tuple[Any, list[Any]]:
            return _karrio().Tracking.fetch(request).from_(gateway).parse()

        details, messages = await self._call(carrier, "tracking", call, executes=False)
        if not details:
            raise domain.failure(carrier, "tracking", messages)
        return [domain.from_tracking_details(d) for d in details]

    def close(self) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors.clear()

    # -- plumbing ------------------------------------------------------------------------

    async def _call(self, carrier: str, operation: str, work: Callable[[Any], T], *,
                    executes: bool) -> T:
        await self.open()
        gateway_for = self._gateway_factory(carrier)
        loop = asyncio.get_running_loop()
        timeout = self._settings.timeout_seconds
        future = loop.run_in_executor(self._executor(carrier), lambda: work(gateway_for()))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            log.warning("carrier call timed out", carrier=carrier, operation=operation,
                        timeout_seconds=timeout)
            raise CarrierUnavailable(carrier, f"no answer within {timeout:g}s",
                                     maybe_executed=executes) from None

    def _executor(self, carrier: str) -> ThreadPoolExecutor:
        if carrier not in self._executors:
            self._executors[carrier] = ThreadPoolExecutor(
                max_workers=self._settings.concurrency, thread_name_prefix=f"karrio-{carrier}")
        return self._executors[carrier]

    def _gateway_factory(self, carrier: str) -> Callable[[], Any]:
        sdk = _karrio()
        if carrier not in domain.CARRIERS or carrier not in sdk.gateway.providers:
            raise CarrierNotConfigured(carrier, "no karrio plugin for this carrier is installed")
        account = getattr(self._settings, carrier)
        if account is None:
            raise CarrierNotConfigured(carrier, "no account is configured for this carrier")
        if carrier not in self._settings_types:
            provider = sdk.gateway.providers[carrier]
            settings_type = provider.Settings
            if account.server_url:
                settings_type = _with_server_url(settings_type, account.server_url)
            self._settings_types[carrier] = settings_type
            self._proxies[carrier] = _guarded(provider.Proxy)
            import karrio.lib

            self._caches[carrier] = karrio.lib.Cache()
        fields = {
            name: value.get_secret_value() if hasattr(value, "get_secret_value") else value
            for name, value in account
            if name != "server_url" and value != ""
        }
        settings_type = self._settings_types[carrier]
        proxy_type = self._proxies[carrier]
        cache = self._caches[carrier]
        test_mode = self._settings.test_mode

        def make() -> Any:
            gateway = sdk.gateway[carrier].create(
                settings_type(**fields, test_mode=test_mode), cache=cache)
            gateway.proxy = proxy_type(gateway.settings)
            return gateway

        return make
