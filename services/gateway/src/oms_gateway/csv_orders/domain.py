"""Orders as CSV, both ways: the rules, on the proto3 JSON mapping of an order (plain dicts),
without a web framework or gRPC.

One row per order line; the rows of one order share its ``externalOrderId`` (they need not
be adjacent). Order columns may be left empty on an order's other rows; given there, they
must repeat the first value. Each column is a field of the order's JSON body, so an import
row becomes the very body ``POST /v1/orders`` takes, and every error found in it — by the
protobuf parser or by the orders service — is named back as the CSV line and column it came
from. An export writes the same columns (the order's columns on every row) and a few of the
order's own (``order``, ``status``, …) that an import ignores, so an export imports again.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Column → the field's JSON path in the order ("[]" is the row's line index).
ORDER_COLUMNS: dict[str, str] = {
    "externalOrderId": "externalOrderId",
    "channel": "channel",
    "orderTime": "orderTime",
    "promiseTime": "promiseTime",
    "serviceLevel": "serviceLevel",
    "paymentStatus": "paymentStatus",
    "priority": "priority",
    "tags": "tags",
    "giftNote": "giftNote",
    "customerId": "customer.externalCustomerId",
    "customerName": "customer.displayName",
    "customerEmail": "customer.email",
    "customerPhone": "customer.phone",
    "recipient": "shippingAddress.recipient",
    "organization": "shippingAddress.organization",
    "addressLine1": "shippingAddress.addressLines[0]",
    "addressLine2": "shippingAddress.addressLines[1]",
    "addressLine3": "shippingAddress.addressLines[2]",
    "locality": "shippingAddress.locality",
    "administrativeArea": "shippingAddress.administrativeArea",
    "postalCode": "shippingAddress.postalCode",
    "regionCode": "shippingAddress.regionCode",
    "phone": "shippingAddress.phone",
    "email": "shippingAddress.email",
}
LINE_COLUMNS: dict[str, str] = {
    "externalLineId": "lines[].externalLineId",
    "sku": "lines[].sku",
    "quantity": "lines[].quantity",
    "unitPrice": "lines[].unitPrice.amount",
    "currency": "lines[].unitPrice.currencyCode",
}
COLUMNS = {**ORDER_COLUMNS, **LINE_COLUMNS}
# Written by an export, ignored by an import: what the service decided.
EXPORT_ONLY: dict[str, str] = {
    "order": "name",
    "status": "status",
    "createTime": "createTime",
    "total": "total.amount",
    "lineId": "lines[].lineId",
    "allocatedQuantity": "lines[].allocatedQuantity",
    "cancelledQuantity": "lines[].cancelledQuantity",
    "shippedQuantity": "lines[].shippedQuantity",
}
EXPORT_COLUMNS = [*COLUMNS, *EXPORT_ONLY]
KEY = "externalOrderId"
TAG_SEPARATOR = "|"
_INDEX = re.compile(r"\[(\d+)\]")


class FileError(ValueError):
    """A file that cannot be read as orders at all: every reason, as problem field errors."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['detail']}" for e in errors))
        self.errors = errors


@dataclass
class Draft:
    """One order of the file: its JSON body, where each of its fields was written, and the
    errors found so far (a draft with errors is refused and never sent)."""

    external_order_id: str
    lines: list[int] = field(default_factory=list)  # the CSV line of each order line
    body: dict[str, Any] = field(default_factory=dict)
    written_at: dict[str, int] = field(default_factory=dict)  # order column → CSV line
    errors: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, line: int, column: str | None, detail: str) -> None:
        error: dict[str, Any] = {"line": line, "detail": detail}
        if column is not None:
            error["column"] = column
        self.errors.append(error)

    def where(self, json_path: str) -> tuple[int, str | None]:
        """The CSV line and column of a field's JSON path (a violation's ``field``)."""
        line_index = None
        match = re.match(r"^lines\[(\d+)\]", json_path)
        if match:
            line_index = int(match.group(1))
        template = _INDEX.sub("[]", json_path, count=1) if line_index is not None else json_path
        column = _column_of(template)
        if line_index is not None and line_index < len(self.lines):
            return self.lines[line_index], column
        return self.written_at.get(column or "", self.lines[0] if self.lines else 1), column


def _column_of(template: str) -> str | None:
    """The column of a field, or of the first column under it (``shippingAddress`` →
    ``recipient``); None for the order's lines as a whole."""
    if template in ("lines", "lines[]"):
        return None
    for column, path in COLUMNS.items():
        if path == template:
            return column
    for column, path in COLUMNS.items():
        if path.startswith(template + ".") or path.startswith(template + "["):
            return column
    return None


def parse(text: str, *, max_rows: int, max_orders: int) -> list[Draft]:
    """The file's orders, in the order of their first row; FileError when the file as a
    whole is unusable (no header, unknown or repeated columns, too many rows or orders)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise FileError([{"field": "", "detail": "the file is empty: a header row of "
                              f"column names comes first (at least {KEY})"}])
        columns = _check_header([cell.strip() for cell in header])
        drafts: dict[str, Draft] = {}
        start = reader.line_num + 1
        rows = 0
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # a blank line, as spreadsheets leave at the end
            rows += 1
            if rows > max_rows:
                raise FileError([{"field": "", "detail": f"at most {max_rows} rows per file"}])
            _take_row(drafts, columns, row, line)
            if len(drafts) > max_orders:
                raise FileError([{"field": KEY,
                                  "detail": f"at most {max_orders} orders per file"}])
    except csv.Error as error:
        raise FileError([{"field": "", "detail": f"line {reader.line_num}: {error}"}]) from error
    if not drafts:
        raise FileError([{"field": "", "detail": "the file has no order rows"}])
    return list(drafts.values())


def _check_header(header: list[str]) -> list[str]:
    errors = []
    unknown = [c for c in header if c not in COLUMNS and c not in EXPORT_ONLY]
    if unknown:
        errors.append({"field": ", ".join(unknown),
                       "detail": f"unknown columns (known: {', '.join(EXPORT_COLUMNS)})"})
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        errors.append({"field": ", ".join(repeated), "detail": "columns given twice"})
    if KEY not in header:
        errors.append({"field": KEY, "detail": "a required column: it groups the rows into "
                       "orders"})
    if errors:
        raise FileError(errors)
    return header


def _take_row(drafts: dict[str, Draft], columns: Sequence[str], row: Sequence[str],
              line: int) -> None:
    cells = {column: value.strip() for column, value in zip(columns, row, strict=False)
             if column in COLUMNS and value.strip()}
    external = cells.get(KEY, "")
    draft = drafts.setdefault(external, Draft(external))
    if len(row) > len(columns):  # fewer is fine: trailing empty cells left out
        draft.refuse(line, None, f"{len(row)} cells for {len(columns)} columns")
    if not external:
        draft.refuse(line, KEY, "required: it names the order the row belongs to")
    index = len(draft.lines)
    draft.lines.append(line)
    for column, value in cells.items():
        if column in ORDER_COLUMNS:
            _order_cell(draft, column, value, line)
        else:
            _put(draft.body, LINE_COLUMNS[column].replace("[]", f"[{index}]"),
                 _value(column, value))
    if "lines" not in draft.body or len(draft.body["lines"]) <= index:
        _put(draft.body, f"lines[{index}].sku", "")  # a row is a line, even without cells


def _order_cell(draft: Draft, column: str, value: str, line: int) -> None:
    first = draft.written_at.get(column)
    if first is None:
        draft.written_at[column] = line
        _put(draft.body, ORDER_COLUMNS[column], _value(column, value))
    elif _get(draft.body, ORDER_COLUMNS[column]) != _value(column, value):
        draft.refuse(line, column, f"differs from line {first} of the same order")


def _value(column: str, value: str) -> Any:
    """A cell as its JSON value; what does not convert is passed on as written, for the
    parser to name."""
    if column == "tags":
        return [tag.strip() for tag in value.split(TAG_SEPARATOR) if tag.strip()]
    if column == "priority" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _steps(path: str) -> Iterator[str | int]:
    for part in path.split("."):
        name, *indexes = part.split("[")
        yield name
        for index in indexes:
            yield int(index.rstrip("]"))


def _put(body: dict[str, Any], path: str, value: Any) -> None:
    """Sets the field at ``path`` (``lines[2].unitPrice.amount``), making what leads to it;
    a list is padded with empty entries up to the index."""
    steps = list(_steps(path))
    here: Any = body
    for step, following in itertools.pairwise(steps):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(step, int):
            while len(here) <= step:
                here.append([] if isinstance(following, int) else {})
            here = here[step]
        else:
            here = here.setdefault(step, empty)
    last = steps[-1]
    if isinstance(last, int):
        while len(here) <= last:
            here.append("")
    here[last] = value


def _get(body: Mapping[str, Any], path: str) -> Any:
    here: Any = body
    for step in _steps(path):
        try:
            here = here[step]
        except (KeyError, IndexError, TypeError):
            return None
    return here


def export_rows(orders: Iterable[Mapping[str, Any]]) -> Iterator[list[str]]:
    """Rows of orders in their JSON mapping (``GET /v1/orders``' orders): one per line, the
    order's columns repeated on each."""
    for order in orders:
        for index in range(len(order.get("lines", [])) or 1):
            yield [_cell(_get(order, path.replace("[]", f"[{index}]")))
                   for path in [*COLUMNS.values(), *EXPORT_ONLY.values()]]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return TAG_SEPARATOR.join(str(v) for v in value)
    return str(value)


def csv_line(cells: Sequence[str]) -> str:
    """One CSV record (RFC 4180: CRLF, fields quoted where they need it)."""
    out = io.StringIO()
    csv.writer(out).writerow(cells)
    return out.getvalue()
