"""The CSV routes: ``POST /v1/orders:import`` and ``GET /v1/orders:export``.

An import is one ``BatchCreateOrders`` call for the file's orders that the gateway found
nothing wrong with: the orders service captures each order or refuses it on its own, and a
refused order writes nothing. Each order's ``request_id`` is derived from the import's
``Idempotency-Key`` and the order's id, so a retried import (even one whose stored answer was
lost) creates nothing twice. An export pages through ``ListOrders`` and streams the rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from google.protobuf import json_format
from google.rpc import error_details_pb2
from oms.orders.v1 import orders_pb2

from oms_gateway.auth import require
from oms_gateway.channels import chosen_channel, scoped_filter
from oms_gateway.csv_orders import domain
from oms_gateway.fields import Shape, violations
from oms_gateway.idempotency.middleware import HEADER, reached
from oms_gateway.openapi import Operation
from oms_gateway.partners.domain import Partner
from oms_gateway.problems import Problem

_ORDER = orders_pb2.Order.DESCRIPTOR
# The service names a batch's fields requests[i].order.…; past the index, a create's.
_CREATE = Shape(orders_pb2.CreateOrderRequest.DESCRIPTOR, "order")
_LIST_QUERY = Shape(orders_pb2.ListOrdersRequest.DESCRIPTOR)
EXPORT_PAGE_SIZE = 500  # the orders service's largest page


_ERROR = {
    "type": "object", "required": ["line", "detail"], "additionalProperties": False,
    "properties": {
        "line": {"type": "integer", "minimum": 1, "description": "The CSV line (1: the header)"},
        "column": {"type": "string", "description": "The column, when one is to blame",
                   "examples": ["quantity"]},
        "detail": {"type": "string", "examples": ["must be at least 1"]}}}
IMPORT_RESULT = {
    "type": "object", "title": "ImportResult", "additionalProperties": False,
    "required": ["created", "refused", "orders"],
    "properties": {
        "created": {"type": "integer", "minimum": 0},
        "refused": {"type": "integer", "minimum": 0},
        "orders": {"type": "array", "description": "One per order, in the file's order",
                   "items": {
            "type": "object", "additionalProperties": False,
            "required": ["externalOrderId", "lines", "status"],
            "properties": {
                "externalOrderId": {"type": "string"},
                "lines": {"type": "array", "items": {"type": "integer", "minimum": 2},
                          "description": "The CSV lines of the order's rows"},
                "status": {"type": "string", "enum": ["created", "refused"],
                           "description": "`created` also when the channel already had the "
                           "order (it is not created twice)"},
                "order": {"type": "string", "description": "The order's name, when created",
                          "examples": ["orders/5b0c…"]},
                "errors": {"type": "array", "items": _ERROR}}}}}}
CSV_FILE = {"type": "string", "minLength": 1, "description": (
    "RFC 4180 CSV in UTF-8, a header row of column names first, one row per order line. "
    "Order columns: " + ", ".join(f"`{c}`" for c in domain.ORDER_COLUMNS) + "; line columns: "
    + ", ".join(f"`{c}`" for c in domain.LINE_COLUMNS) + ". Each is the field of the JSON "
    "order body of the same meaning (`tags` separated by `|`, `priority` true or false); "
    "columns may come in any order and all but `externalOrderId` may be left out.")}
IMPORT_EXAMPLE = (
    "externalOrderId,channel,customerName,recipient,addressLine1,locality,administrativeArea,"
    "postalCode,regionCode,paymentStatus,sku,quantity,unitPrice,currency\r\n"
    "2001,shopify-demo,Ada Lovelace,Ada Lovelace,1 Market St,San Francisco,CA,94105,US,"
    "PAYMENT_STATUS_PAID,TSHIRT-BLK-M,2,19.99,USD\r\n"
    "2001,,,,,,,,,,MUG-WHT-11OZ,1,9.50,USD\r\n")
EXPORT_FILE = {"type": "string", "description": (
    "RFC 4180 CSV: the import's columns, then " + ", ".join(
        f"`{c}`" for c in domain.EXPORT_ONLY) + "; one row per order line")}

OPERATIONS = {
    ("POST", "/v1/orders:import"): Operation(
        IMPORT_RESULT, body_schema=CSV_FILE, body_media="text/csv", example=IMPORT_EXAMPLE,
        example_summary="A paid order of two demo SKUs on the demo channel, one row a line",
        description="Each order of the file, created or refused with its errors"),
    ("GET", "/v1/orders:export"): Operation(
        EXPORT_FILE, answer_media="text/csv",
        description="The orders, one row per line, streamed"),
}


def order_request_id(import_request_id: str, external_order_id: str) -> str:
    return hashlib.sha256(f"{import_request_id}\n{external_order_id}".encode()).hexdigest()


def router(*, timeout: float, max_rows: int, max_orders: int, batch_orders: int,
           export_max_orders: int) -> APIRouter:
    """The routes. An import sends ``batch_orders`` orders per BatchCreateOrders call: each
    call is one transaction of the orders service and has the request timeout to itself, so
    a file at its bound does not outlast one deadline. A call that fails leaves the import
    unanswered (503, not stored); its retry finds the orders earlier calls created through
    their request ids, and creates the rest."""
    routes = APIRouter()

    @routes.post("/v1/orders:import", tags=["orders"],
                 summary="Capture the orders of a CSV file, each on its own")
    async def import_orders(
        request: Request,
        partner: Annotated[Partner, Depends(require("orders:write"))],
        idempotency_key: Annotated[str, Header(alias=HEADER)],
    ) -> dict[str, Any]:
        """One row per order line, grouped into orders by `externalOrderId`. Every order is
        created or refused on its own, a refused one with the CSV line and column of each
        error and nothing of it stored. A file that cannot be read as orders (no
        `externalOrderId` column, unknown columns, more rows or orders than allowed, not
        UTF-8) is a 400 and nothing is stored."""
        try:
            text = (await request.body()).decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise _file_problem([{"field": "", "detail": "the file is not UTF-8"}]) from error
        try:
            drafts = domain.parse(text, max_rows=max_rows, max_orders=max_orders)
        except domain.FileError as error:
            raise _file_problem(error.errors) from error
        ready = [(draft, message) for draft in drafts
                 if (message := _checked(draft, partner)) is not None]
        created: dict[int, orders_pb2.BatchCreateOrderResult] = {}
        if ready:
            request_id = reached(request)
            for start in range(0, len(ready), batch_orders):
                chunk = ready[start:start + batch_orders]
                reply = await request.app.state.orders.BatchCreateOrders(
                    orders_pb2.BatchCreateOrdersRequest(requests=[
                        orders_pb2.CreateOrderRequest(
                            order=message,
                            request_id=order_request_id(request_id, draft.external_order_id))
                        for draft, message in chunk]),
                    timeout=timeout,
                    metadata=(("oms-actor", f"partner:{partner.partner_id}"),))
                created.update({id(draft): result for (draft, _), result in zip(
                    chunk, reply.results, strict=True)})
        return _results(drafts, created)

    @routes.get("/v1/orders:export", tags=["orders"],
                summary="Export a channel's orders as CSV, one row per line",
                response_class=StreamingResponse)
    async def export_orders(
        request: Request,
        partner: Annotated[Partner, Depends(require("orders:read"))],
        channel: Annotated[str | None, Query(
            description="One of the partner's channels; may be left out by a partner bound "
            "to one")] = None,
        filter_: Annotated[str, Query(
            alias="filter", max_length=2000,
            description="The same AIP-160 terms as `GET /v1/orders`")] = "",
    ) -> StreamingResponse:
        """The orders `GET /v1/orders` lists with the same channel and filter, newest first,
        in the columns an import takes (so an export imports again) and a few of the
        order's own, which an import ignores: `order`, `status`, `createTime`, `total`,
        `lineId`, `allocatedQuantity`, `cancelledQuantity`, `shippedQuantity`."""
        request.state.body = _LIST_QUERY
        channel = chosen_channel(partner, channel, action="export the orders of")
        scoped = scoped_filter(channel, filter_)
        orders = request.app.state.orders
        counted = await orders.CountOrders(orders_pb2.CountOrdersRequest(filter=scoped),
                                           timeout=timeout)
        total = sum(c.count for c in counted.counts)
        if total > export_max_orders:
            raise Problem(400, "Invalid argument",
                          f"the filter matches {total} orders; an export holds at most "
                          f"{export_max_orders}", kind="invalid-argument",
                          extra={"errors": [{"field": "filter", "detail": (
                              f"matches {total} orders, at most {export_max_orders}: narrow "
                              "it, e.g. by create_time")}]})
        # The first page before the answer starts, so that its errors are problems.
        first = await orders.ListOrders(orders_pb2.ListOrdersRequest(
            filter=scoped, page_size=EXPORT_PAGE_SIZE), timeout=timeout)

        async def rows() -> AsyncIterator[str]:
            yield domain.csv_line(domain.EXPORT_COLUMNS)
            page, sent = first, 0
            while True:
                batch = [_json(o) for o in page.orders][:export_max_orders - sent]
                sent += len(batch)
                yield "".join(domain.csv_line(row) for row in domain.export_rows(batch))
                if not page.next_page_token or sent >= export_max_orders:
                    return
                page = await orders.ListOrders(orders_pb2.ListOrdersRequest(
                    filter=scoped, page_size=EXPORT_PAGE_SIZE,
                    page_token=page.next_page_token), timeout=timeout)

        return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="orders-{channel}.csv"'})

    return routes


def _file_problem(errors: list[dict[str, str]]) -> Problem:
    return Problem(400, "Invalid argument",
                   "the file cannot be read as orders: " + "; ".join(
                       f"{e['field']}: {e['detail']}" if e["field"] else e["detail"]
                       for e in errors), kind="invalid-argument", extra={"errors": errors})


def _checked(draft: domain.Draft, partner: Partner) -> orders_pb2.Order | None:
    """The draft as an order to send, or None once it is refused: its channel must be the
    partner's (the only one when the column is empty), its cells must parse."""
    if draft.errors:
        return None
    channel = draft.body.get("channel")
    if channel is None and len(partner.channels) == 1:
        draft.body["channel"] = channel = next(iter(partner.channels))
    if channel is None:
        draft.refuse(draft.lines[0], "channel", "required: the partner has several channels")
    elif not partner.may_see_channel(str(channel)):
        draft.refuse(*draft.where("channel"), "not a channel of this partner")
    for bad in violations(draft.body, _ORDER) if not draft.errors else []:
        draft.refuse(*draft.where(bad["field"]), bad["detail"])
    if draft.errors:
        return None
    message = orders_pb2.Order()
    try:
        json_format.ParseDict(draft.body, message)
    except json_format.ParseError:
        draft.refuse(draft.lines[0], None, "the order's cells do not make an order")
        return None
    return message


def _results(drafts: list[domain.Draft],
             created: dict[int, orders_pb2.BatchCreateOrderResult]) -> dict[str, Any]:
    results = []
    for draft in drafts:
        outcome = created.get(id(draft))
        if outcome is not None and outcome.HasField("order"):
            results.append({"externalOrderId": draft.external_order_id,
                            "lines": draft.lines, "status": "created",
                            "order": outcome.order.name})
            continue
        if outcome is not None:
            _refused_by_service(draft, outcome)
        results.append({"externalOrderId": draft.external_order_id, "lines": draft.lines,
                        "status": "refused", "errors": sorted(draft.errors, key=_by_cell)})
    count = sum(r["status"] == "created" for r in results)
    return {"created": count, "refused": len(results) - count, "orders": results}


_COLUMN_ORDER = {column: n for n, column in enumerate(domain.COLUMNS)}


def _by_cell(error: dict[str, Any]) -> tuple[int, int]:
    """Errors as a person reads the file: by line, then column."""
    return error["line"], _COLUMN_ORDER.get(error.get("column", ""), -1)


def _refused_by_service(draft: domain.Draft,
                        outcome: orders_pb2.BatchCreateOrderResult) -> None:
    """The service's field violations, named by the CSV line and column they came from."""
    found = False
    for detail in outcome.error.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            for violation in bad_request.field_violations:
                # requests[3].order.lines[0].quantity → lines[0].quantity
                path = _CREATE.path(violation.field.split("].", 1)[-1])
                draft.refuse(*draft.where(path), violation.description)
                found = True
    if not found:
        draft.refuse(draft.lines[0], None, outcome.error.message or "refused")


def _json(order: orders_pb2.Order) -> dict[str, Any]:
    return json_format.MessageToDict(order, preserving_proto_field_name=False)
