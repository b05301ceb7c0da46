"""The carriers' and origins' RPCs. A mixin of the service's servicer, which provides
``self._sessions``."""

from __future__ import annotations

from typing import Any

import grpc
from oms.shipping.v1 import shipping_pb2
from oms_platform import lists
from oms_platform.errors import AlreadyExists, NotFound, Violations
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_shipping.carriers import convert, domain, store
from oms_shipping.carriers.domain import (
    CARRIER_ID,
    CARRIER_NAME,
    CARRIER_PATHS,
    NODE_ID,
    ORIGIN_NAME,
    ORIGIN_PATHS,
)


class CarriersApi:
    _sessions: async_sessionmaker[AsyncSession]

    # --- Carriers ---

    async def CreateCarrier(self, request: shipping_pb2.CreateCarrierRequest,
                            context: grpc.aio.ServicerContext) -> shipping_pb2.Carrier:
        violations = Violations()
        domain.check_request_id(violations, "request_id", request.request_id)
        services: list[domain.CarrierService] = []
        if violations.require(request.HasField("carrier"), "carrier", "required"):
            carrier = request.carrier
            domain.check_pattern(violations, "carrier.carrier_id", carrier.carrier_id,
                                 CARRIER_ID)
            services = convert.services_of(violations, "carrier.services", carrier.services)
            _check_carrier(violations, carrier, services, set(CARRIER_PATHS))
        violations.raise_if_any()
        carrier = request.carrier
        values = {"carrier_id": carrier.carrier_id, **convert.carrier_values(carrier, services),
                  "request_id": request.request_id}
        async with self._sessions.begin() as session:
            if (earlier := await store.carrier_by_request(session, request.request_id)):
                return convert.carrier_message(earlier)
            await _check_codes_free(session, carrier.carrier_id, services)
            created = False

            async def insert() -> Row[Any] | None:
                nonlocal created
                row = await store.insert_carrier(session, values)
                created = row is not None
                return row

            row = await store.create_once(
                request.request_id, insert,
                lambda: store.carrier_by_request(session, request.request_id))
            if row is None:
                raise AlreadyExists(f"carrier {carrier.carrier_id} already exists",
                                    metadata={"name": f"carriers/{carrier.carrier_id}"})
            if created:
                await store.replace_services(session, row.carrier_id,
                                             [s.code for s in services])
        return convert.carrier_message(row)

    async def GetCarrier(self, request: shipping_pb2.GetCarrierRequest,
                         context: grpc.aio.ServicerContext) -> shipping_pb2.Carrier:
        carrier_id = domain.parse_name(CARRIER_NAME, request.name, "carriers/{carrier_id}")
        async with self._sessions.begin() as session:
            row = await store.carrier_by_id(session, carrier_id)
        if row is None:
            raise NotFound(f"carrier {carrier_id} not found", metadata={"name": request.name})
        return convert.carrier_message(row)

    async def ListCarriers(self, request: shipping_pb2.ListCarriersRequest,
                           context: grpc.aio.ServicerContext
                           ) -> shipping_pb2.ListCarriersResponse:
        _, after, size = lists.parameters(request, {}, (str,), max_page_size=500)
        async with self._sessions.begin() as session:
            rows = await store.list_carriers(session, after=after[0] if after else None,
                                             limit=size + 1)
        return shipping_pb2.ListCarriersResponse(
            carriers=[convert.carrier_message(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.carrier_id], {}))

    async def UpdateCarrier(self, request: shipping_pb2.UpdateCarrierRequest,
                            context: grpc.aio.ServicerContext) -> shipping_pb2.Carrier:
        violations = Violations()
        carrier_id = ""
        paths: list[str] = []
        services: list[domain.CarrierService] = []
        if violations.require(request.HasField("carrier"), "carrier", "required"):
            carrier = request.carrier
            carrier_id = domain.id_of(violations, CARRIER_NAME, carrier.name,
                                      carrier.carrier_id, "carrier", "carrier_id",
                                      "carriers/{carrier_id}")
            domain.check_pattern(violations, "carrier.carrier_id", carrier_id, CARRIER_ID)
            paths = domain.check_mask(violations, request.update_mask.paths, CARRIER_PATHS)
            services = convert.services_of(violations, "carrier.services", carrier.services)
            _check_carrier(violations, carrier, services, set(paths))
        violations.raise_if_any()
        changes = convert.changes(convert.carrier_values(request.carrier, services), paths,
                                  convert.CARRIER_COLUMNS)
        async with self._sessions.begin() as session:
            if "services" in paths:
                await _check_codes_free(session, carrier_id, services)
            row = await store.update_carrier(session, carrier_id, changes)
            if row is None:
                raise NotFound(f"carrier {carrier_id} not found",
                               metadata={"name": f"carriers/{carrier_id}"})
            if "services" in paths:
                await store.replace_services(session, carrier_id, [s.code for s in services])
        return convert.carrier_message(row)

    # --- Origins ---

    async def CreateOrigin(self, request: shipping_pb2.CreateOriginRequest,
                           context: grpc.aio.ServicerContext) -> shipping_pb2.Origin:
        violations = Violations()
        values: dict[str, Any] = {}
        if violations.require(request.HasField("origin"), "origin", "required"):
            origin = request.origin
            domain.check_pattern(violations, "origin.node_id", origin.node_id, NODE_ID)
            if violations.require(origin.HasField("address"), "origin.address", "required"):
                _check_origin(violations, origin, set(ORIGIN_PATHS))
            values = convert.origin_values(violations, origin)
        violations.raise_if_any()
        # Creating an origin that exists replaces it (the contract's "create or replace"), so
        # a retry without a request id is as harmless as one with.
        async with self._sessions.begin() as session:
            row = await store.upsert_origin(session, request.origin.node_id, values)
        return convert.origin_message(row)

    async def GetOrigin(self, request: shipping_pb2.GetOriginRequest,
                        context: grpc.aio.ServicerContext) -> shipping_pb2.Origin:
        node_id = domain.parse_name(ORIGIN_NAME, request.name, "origins/{node_id}")
        async with self._sessions.begin() as session:
            row = await store.origin_by_id(session, node_id)
        if row is None:
            raise NotFound(f"origin {node_id} not found", metadata={"name": request.name})
        return convert.origin_message(row)

    async def ListOrigins(self, request: shipping_pb2.ListOriginsRequest,
                          context: grpc.aio.ServicerContext) -> shipping_pb2.ListOriginsResponse:
        _, after, size = lists.parameters(request, {}, (str,), max_page_size=500)
        async with self._sessions.begin() as session:
            rows = await store.list_origins(session, after=after[0] if after else None,
                                            limit=size + 1)
        return shipping_pb2.ListOriginsResponse(
            origins=[convert.origin_message(row) for row in rows[:size]],
            next_page_token=lists.next_page_token(rows, size, lambda r: [r.node_id], {}))

    async def UpdateOrigin(self, request: shipping_pb2.UpdateOriginRequest,
                           context: grpc.aio.ServicerContext) -> shipping_pb2.Origin:
        violations = Violations()
        node_id = ""
        paths: list[str] = []
        values: dict[str, Any] = {}
        if violations.require(request.HasField("origin"), "origin", "required"):
            origin = request.origin
            node_id = domain.id_of(violations, ORIGIN_NAME, origin.name, origin.node_id,
                                   "origin", "node_id", "origins/{node_id}")
            domain.check_pattern(violations, "origin.node_id", node_id, NODE_ID)
            paths = domain.check_mask(violations, request.update_mask.paths, ORIGIN_PATHS)
            _check_origin(violations, origin, set(paths))
            values = convert.origin_values(violations, origin)
        violations.raise_if_any()
        changes = convert.changes(values, paths, convert.ORIGIN_COLUMNS)
        async with self._sessions.begin() as session:
            row = await store.update_origin(session, node_id, changes)
        if row is None:
            raise NotFound(f"origin {node_id} not found", metadata={"name": f"origins/{node_id}"})
        return convert.origin_message(row)


def _check_carrier(violations: Violations, carrier: shipping_pb2.Carrier,
                   services: list[domain.CarrierService], paths: set[str]) -> None:
    domain.check_carrier(
        violations, "carrier", mode=carrier.mode, karrio_carrier=carrier.karrio_carrier,
        tracking_scheme=carrier.tracking_scheme,
        tracking_url_template=carrier.tracking_url_template,
        display_name=carrier.display_name, services=services, paths=paths)


def _check_origin(violations: Violations, origin: shipping_pb2.Origin, paths: set[str]) -> None:
    domain.check_origin(
        violations, "origin", country=origin.address.region_code,
        postal_code=origin.address.postal_code, time_zone=origin.time_zone,
        carriers=list(origin.carriers), paths=paths)


async def _check_codes_free(session: AsyncSession, carrier_id: str,
                            services: list[domain.CarrierService]) -> None:
    taken = await store.services_sold_elsewhere(session, carrier_id, [s.code for s in services])
    if taken:
        violations = Violations()
        for index, service in enumerate(services):
            if service.code in taken:
                violations.add(f"carrier.services[{index}].code",
                               f"is a service of carrier {taken[service.code]}")
        violations.raise_if_any()
