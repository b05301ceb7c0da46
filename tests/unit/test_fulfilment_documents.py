"""Packing slips and pick lists read back as a person or a scanner would: each PDF is
rendered with PDFium, its text extracted and its barcode decoded."""

from __future__ import annotations

import pypdfium2 as pdfium
import pytest
import zxingcpp
from oms_fulfilment.documents.domain import (
    MAX_SLIPS,
    Address,
    Charge,
    PackingSlip,
    PickListDocument,
    PickStop,
    SlipLine,
    packing_slip_pdf,
    packing_slips_pdf,
    pick_list_pdf,
)
from oms_platform.errors import InvalidArgument
from oms_platform.money import Money

BERLIN = Address("Zoë Müller", ("Hauptstraße 5", "2. OG"), "Berlin", "10115", "DE")


def eur(amount: str) -> Money:
    return Money.of("EUR", amount)


def pages(pdf: bytes) -> list[str]:
    document = pdfium.PdfDocument(pdf)
    try:
        return [page.get_textpage().get_text_range() for page in document]
    finally:
        document.close()


def slip(order_number: str, lines: tuple[SlipLine, ...], **extra: object) -> PackingSlip:
    return PackingSlip(channel="shopify", order_number=order_number,
                       package=f"fulfilmentOrders/{order_number}/packages/1",
                       ship_to=BERLIN, lines=lines, **extra)  # type: ignore[arg-type]


MUGS = SlipLine("MUG-RED", "Red mug & saucer", 3, eur("19.99"))
TEA = SlipLine("TEA-GRN", "Green tea <loose>", 1, eur("0.10"))


def test_a_slip_prints_its_order_ship_to_lines_and_totals() -> None:
    # 3 x 19.99 = 59.97; + 0.10 = 60.07; + 4.95 shipping - 5.00 discount = 60.02.
    pdf = packing_slip_pdf(slip("1001", (MUGS, TEA),
                                charges=(Charge("Shipping", eur("4.95")),
                                         Charge("Discount", eur("-5.00"))),
                                tax_included=eur("9.58"), gift_note="Happy birthday!\nAna"))
    (text,) = pages(pdf)
    lines = text.splitlines()
    for expected in ("Order 1001", "Channel: shopify", "Parcel: fulfilmentOrders/1001/packages/1",
                     "Zoë Müller", "Hauptstraße 5", "10115 Berlin",
                     "MUG-RED Red mug & saucer 3 19.99 EUR 59.97 EUR",
                     "TEA-GRN Green tea <loose> 1 0.10 EUR 0.10 EUR",
                     "Subtotal 60.07 EUR", "Shipping 4.95 EUR", "Discount -5.00 EUR",
                     "Total 60.02 EUR", "Tax included 9.58 EUR",
                     "Gift note", "Happy birthday!", "Ana"):
        assert expected in lines, expected


def test_a_gift_slip_can_leave_the_prices_out() -> None:
    (text,) = pages(packing_slip_pdf(slip("1002", (MUGS,), show_prices=False,
                                          gift_note="From Ana")))
    assert "MUG-RED Red mug & saucer 3" in text.splitlines()
    assert "EUR" not in text and "Total" not in text
    assert "From Ana" in text


def test_slips_print_in_bulk_each_from_its_own_page_and_long_ones_run_on() -> None:
    many = tuple(SlipLine(f"SKU-{n:03}", f"Item {n}", 1, eur("1.00")) for n in range(80))
    texts = pages(packing_slips_pdf([slip("2001", (MUGS,)), slip("2002", many),
                                     slip("2003", (TEA,))]))
    starts = [i for i, text in enumerate(texts) if "Packing slip" in text]
    assert len(texts) >= 4 and len(starts) == 3 and starts[0] == 0
    first, second, third = starts
    assert "Order 2001" in texts[first] and "Order 2002" in texts[second]
    assert "Order 2003" in texts[third] and third > second + 1
    # The long slip's rest carries the table header again, then its last lines and total.
    rest = "\n".join(texts[second + 1:third])
    assert "SKU Item Qty Unit price Total" in rest
    assert "SKU-079 Item 79 1 1.00 EUR 1.00 EUR" in rest and "Total 80.00 EUR" in rest
    assert all("Order 2001" not in text for text in texts[second:])


def test_slips_are_checked_before_printing() -> None:
    with pytest.raises(InvalidArgument) as bad:
        packing_slips_pdf([slip("", (SlipLine("X", "x", 0, eur("1.00")),),
                                charges=(Charge("Shipping", Money.of("USD", "5")),)),
                           slip("3002", ())])
    assert {v.field for v in bad.value.violations} == {
        "slips[0].order_number", "slips[0]", "slips[0].lines[0].quantity", "slips[1].lines"}
    with pytest.raises(InvalidArgument):
        packing_slips_pdf([slip("3003", (TEA,))] * (MAX_SLIPS + 1))


def test_a_pick_list_prints_its_stops_in_order_and_a_barcode_of_its_id() -> None:
    stops = (PickStop("A-01-02", "MUG-RED", "Red mug", 4, tote="T1"),
             PickStop("A-02-01", "TEA-GRN", "Green tea", 1, tote="T2"),
             PickStop("B-01-01", "CUP-BLU", "Blue cup", 2, tote="T1"))
    pdf = pick_list_pdf(PickListDocument("pickLists/7f3a-19", "batch", "node-berlin", stops,
                                         zone="A"))
    (text,) = pages(pdf)
    lines = text.splitlines()
    assert "Strategy: batch" in lines and "Zone: A" in lines
    rows = [line for line in lines if line[:1].isdigit()]
    assert rows == ["1 A-01-02 MUG-RED Red mug 4 T1", "2 A-02-01 TEA-GRN Green tea 1 T2",
                    "3 B-01-01 CUP-BLU Blue cup 2 T1"]

    document = pdfium.PdfDocument(pdf)
    image = document[0].render(scale=3).to_pil()
    document.close()
    decoded = zxingcpp.read_barcodes(image)
    assert [(code.format, code.text) for code in decoded] == [
        (zxingcpp.BarcodeFormat.Code128, "pickLists/7f3a-19")]


def test_a_pick_list_is_checked_before_printing() -> None:
    with pytest.raises(InvalidArgument) as bad:
        pick_list_pdf(PickListDocument("liste-é", "single", "n", (PickStop("A", "B", "C", 0),)))
    assert {v.field for v in bad.value.violations} == {"list_id", "stops[0].quantity"}
