"""Label and manifest documents, rendered and read back: the PDF's Code 128 barcode decodes
to the tracking number (pypdfium2 renders, zxing-cpp reads), ZPL has its commands."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pypdfium2
import pytest
import zxingcpp
from oms_shipping.documents import domain
from oms_shipping.documents.domain import (
    LabelDocument,
    ManifestDocument,
    ManifestLine,
    PrintedAddress,
)
from oms_shipping.labels.domain import TrackingFormat, TrackingScheme, tracking_number

FROM = PrintedAddress(("Unit 4, Brunel Way",), "Swindon", "", "SN2 8AA", "GB",
                      organization="OMS Demo UK")
TO = PrintedAddress(("10 Downing Street",), "London", "", "SW1A 2AA", "GB", name="Ada Lovelace")


def _label(number: str) -> LabelDocument:
    return LabelDocument(number, "royal_mail", "Royal Mail Tracked 48", FROM, TO, 1250,
                         "fulfilmentOrders/f1/packages/p1", date(2026, 12, 4), ("orders/o1",))


def _read(pdf: bytes, page: int = 0) -> list[tuple[str, str]]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        image = document[page].render(scale=3).to_pil()
    finally:
        document.close()
    return [(found.text, found.format.name) for found in zxingcpp.read_barcodes(image)]


def _text(pdf: bytes) -> str:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


@pytest.mark.parametrize("scheme", list(TrackingScheme))
def test_the_label_barcode_reads_back_as_the_tracking_number(scheme: TrackingScheme) -> None:
    number = tracking_number(TrackingFormat(scheme, country="GB"), 987_654, "STANDARD")
    pdf = domain.label_pdf(_label(number))
    assert _read(pdf) == [(number, "Code128")]


def test_the_label_is_one_4_by_6_inch_page_with_both_addresses() -> None:
    pdf = domain.label_pdf(_label("RR123456785GB"))
    document = pypdfium2.PdfDocument(pdf)
    try:
        assert len(document) == 1
        assert document[0].get_size() == (288, 432)
    finally:
        document.close()
    text = _text(pdf)
    for part in ("Ada Lovelace", "SW1A 2AA", "OMS Demo UK", "SN2 8AA", "Royal Mail Tracked 48",
                 "1.25 kg", "fulfilmentOrders/f1/packages/p1", "RR12 3456 785G B"):
        assert part in text


def test_a_reprint_is_the_same_bytes() -> None:
    assert domain.label_pdf(_label("RR123456785GB")) == domain.label_pdf(_label("RR123456785GB"))


def test_zpl_label() -> None:
    zpl = domain.label_zpl(_label("1Z999AA10123456784")).decode()
    assert zpl.startswith("^XA\n") and zpl.endswith("^XZ\n")
    assert "^BCN,240,Y,N,N,A^FH_^FD1Z999AA10123456784^FS" in zpl
    assert "^PW812" in zpl and "^LL1218" in zpl
    assert "^FDAda Lovelace^FS" in zpl


def test_zpl_escapes_its_control_characters_in_data() -> None:
    tricky = PrintedAddress(("Flat ^1 ~ north_side",), "London", "", "N1", "GB")
    label = LabelDocument("RR123456785GB", "royal_mail", "Tracked", FROM, tricky, 10, "p",
                          date(2026, 12, 4))
    zpl = domain.label_zpl(label).decode()
    assert "^FDFlat _5E1 _7E north_5Fside^FS" in zpl
    # Every command a field could have smuggled in is one of ours.
    assert zpl.count("^XZ") == 1


def test_manifest_lists_every_parcel_across_pages() -> None:
    lines = [ManifestLine(tracking_number(TrackingFormat(TrackingScheme.S10), i), "Tracked 48",
                          f"fulfilmentOrders/f{i}/packages/p1", 500 + i, "GB SW1A 2AA")
             for i in range(1, 121)]
    pdf = domain.manifest_pdf(ManifestDocument("manifests/m1", "royal_mail", "uk-1",
                                               date(2026, 12, 4),
                                               datetime(2026, 12, 4, 17, 30, tzinfo=UTC), lines))
    document = pypdfium2.PdfDocument(pdf)
    try:
        assert len(document) > 1
    finally:
        document.close()
    text = _text(pdf)
    assert "120 parcels" in text and "67.26 kg" in text
    assert all(line.tracking_number in text for line in lines)
    assert ("manifests/m1", "Code128") in _read(pdf)
