"""The CSV rules without a server: rows grouped into orders, each cell's line and column, and
an export that reads back as the orders it came from."""

from __future__ import annotations

import csv
import io

import pytest
from oms_gateway.csv_orders import domain


def test_rows_group_into_orders_by_their_id_and_keep_their_physical_lines() -> None:
    text = ('externalOrderId,sku,quantity,giftNote\r\n'
            '1,A,2,"Happy\r\nbirthday"\r\n'
            '2,B,1,\r\n'
            '\r\n'
            '1,C,1\r\n')
    first, second = domain.parse(text, max_rows=10, max_orders=10)
    assert (first.external_order_id, first.lines, second.lines) == ("1", [2, 6], [4])
    assert first.body == {"externalOrderId": "1", "giftNote": "Happy\r\nbirthday",
                          "lines": [{"sku": "A", "quantity": "2"}, {"sku": "C", "quantity": "1"}]}
    assert not first.errors and not second.errors


def test_a_field_path_is_named_as_the_line_and_column_it_came_from() -> None:
    (draft,) = domain.parse(
        "externalOrderId,recipient,sku,unitPrice\r\n1,Ada,A,1\r\n1,,B,-1\r\n",
        max_rows=10, max_orders=10)
    assert draft.where("lines[1].unitPrice.amount") == (3, "unitPrice")
    assert draft.where("lines[1].unitPrice") == (3, "unitPrice")
    assert draft.where("shippingAddress.recipient") == (2, "recipient")
    assert draft.where("shippingAddress") == (2, "recipient"), "its first column"
    assert draft.where("shippingAddress.postalCode") == (2, "postalCode"), "not written"
    assert draft.where("lines") == (2, None)
    assert draft.where("lines[1]") == (3, None)


def test_order_cells_may_repeat_but_not_differ_and_tags_and_flags_convert() -> None:
    (draft,) = domain.parse(
        "externalOrderId,tags,priority,sku\r\n1,vip|gift ,TRUE,A\r\n1,vip|gift,,B\r\n"
        "1,other,,C\r\n", max_rows=10, max_orders=10)
    assert draft.body["tags"] == ["vip", "gift"] and draft.body["priority"] is True
    assert draft.errors == [{"line": 4, "column": "tags",
                             "detail": "differs from line 2 of the same order"}]


@pytest.mark.parametrize(("text", "detail"), [
    ("sku\r\nA\r\n", "a required column"),
    ("externalOrderId,sku,sku\r\n", "columns given twice"),
    ("externalOrderId,Sku\r\n", "unknown columns"),
    ("externalOrderId\r\n" + "1\r\n" * 3, "at most 2 rows"),
])
def test_a_file_that_is_no_orders_says_why(text: str, detail: str) -> None:
    with pytest.raises(domain.FileError, match=detail):
        domain.parse(text, max_rows=2, max_orders=2)


def test_an_export_reads_back_as_the_orders_it_came_from() -> None:
    order = {"name": "orders/1", "channel": "web", "externalOrderId": "7", "priority": True,
             "tags": ["a", "b"], "shippingAddress": {"addressLines": ["1 St", "Flat 2"]},
             "lines": [{"lineId": "1", "sku": "A", "quantity": 2,
                        "unitPrice": {"currencyCode": "EUR", "amount": "1.50"}},
                       {"lineId": "2", "sku": "B", "quantity": 1}]}
    text = "".join(domain.csv_line(row) for row in [
        domain.EXPORT_COLUMNS, *domain.export_rows([order])])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["lineId"], r["sku"], r["quantity"], r["currency"]) for r in rows] == [
        ("1", "A", "2", "EUR"), ("2", "B", "1", "")]
    assert {r["addressLine2"] for r in rows} == {"Flat 2"} and rows[0]["tags"] == "a|b"
    (again,) = domain.parse(text, max_rows=10, max_orders=10)
    assert again.body["lines"][0] == {"sku": "A", "quantity": "2",
                                      "unitPrice": {"amount": "1.50", "currencyCode": "EUR"}}
    assert again.body["priority"] is True and not again.errors
