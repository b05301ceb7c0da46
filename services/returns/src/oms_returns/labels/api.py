"""Return labels: bought from shipping when a return is approved, and printed.

The label is bought outside any transaction (shipping may call a carrier), then recorded on
the return. Shipping's purchase is idempotent by the return's name, so a process that dies
between the two, a retried approval or a twin racing this one gets the same label again at
no cost. A purchase that fails is recorded on the return (`label.error`) and tried again by
the next ApproveReturn; there is no background retry."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import structlog
from oms.returns.v1 import returns_pb2
from oms_platform.errors import FailedPrecondition, NotFound
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms_returns.labels import convert
from oms_returns.labels.client import LabelRefused, Shipping, ShippingUnavailable
from oms_returns.return_requests import convert as returns_convert
from oms_returns.return_requests import store
from oms_returns.settings import ReturnsSettings

log = structlog.get_logger(__name__)


class LabelsApi:
    _sessions: async_sessionmaker[AsyncSession]
    _settings: ReturnsSettings
    _shipping: Shipping

    async def buy_label(self, found: store.Return) -> store.Return:
        """The approved return with its label, bought now unless it already has one; a
        failure is recorded on the return, which is returned all the same."""
        if found.row.label_name:
            return found
        return_id = found.row.id
        request = convert.label_request(found, self._settings.return_node_id)
        try:
            label = await self._shipping.create_label(request)
        except (LabelRefused, ShippingUnavailable) as error:
            log.warning("return label not bought", **{"return": request.package},
                        error=str(error))
            async with self._sessions.begin() as session:
                await store.change(session, return_id, label_error=str(error)[:1000],
                                   update_time=datetime.now(UTC))
                return (await store.load(session, [return_id]))[0]
        async with self._sessions.begin() as session:
            (current,) = await store.load(session, [return_id], for_update=True)
            if not current.row.label_name:
                await store.change(session, return_id, label_name=label.name,
                                   carrier=label.carrier,
                                   tracking_number=label.tracking_number,
                                   tracking_url=label.tracking_url, label_error="",
                                   update_time=datetime.now(UTC))
                log.info("return label bought", **{"return": request.package},
                         label=label.name, tracking_number=label.tracking_number)
            return (await store.load(session, [return_id]))[0]

    async def GetReturnLabelDocument(self, request: returns_pb2.GetReturnLabelDocumentRequest,
                                     context: grpc.aio.ServicerContext
                                     ) -> returns_pb2.LabelDocument:
        return_id = returns_convert.parse_name(request.name)
        async with self._sessions.begin() as session:
            found = await store.load(session, [return_id])
        if not found:
            raise NotFound(f"{request.name} not found")
        if not found[0].row.label_name:
            raise FailedPrecondition(f"{request.name} has no label yet", reason="NO_LABEL")
        document = await self._shipping.document(found[0].row.label_name)
        return returns_pb2.LabelDocument(content_type=document.content_type,
                                         content=document.content)
