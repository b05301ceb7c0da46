"""Packing slips and pick lists as PDF: data in, bytes out. The API fills the dataclasses
from its tables; nothing here reads a database or builds a message.

- A packing slip is one parcel's invoice: channel, order number, parcel, ship-to, the lines
  (SKU, title, quantity, unit price, line total), the charges (shipping, discounts), the
  total and the tax it includes, and the gift note when there is one. A gift slip may leave
  prices out (``show_prices``). Money is ``oms_platform.money.Money`` (Decimal, one
  currency per slip; a slip in two currencies is refused).
- ``packing_slips_pdf`` prints many slips into one PDF, each from a new page and as many
  pages as its lines need (the table's header repeats on each).
- ``pick_list_pdf`` prints a pick list: its id, also as a Code 128 barcode the picker's
  scanner reads to open it, the strategy, and the stops in walking order (bin, SKU, title,
  quantity, tote).

Text is set in Bitstream Vera, which reportlab ships, embedded so any viewer (and a text
extractor) reads the same glyphs. Bounds: at most ``MAX_SLIPS`` slips per PDF,
``MAX_SLIP_LINES`` lines per slip and ``MAX_PICK_STOPS`` stops per pick list.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

import reportlab
from oms_platform.errors import Violations
from oms_platform.money import Money
from reportlab.graphics.barcode import createBarcodeDrawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

MAX_SLIPS = 500
MAX_SLIP_LINES = 500
MAX_PICK_STOPS = 2_000

FONT = "OmsVera"
BOLD = "OmsVera-Bold"


@dataclass(frozen=True)
class Address:
    """Where the parcel goes, as printed: recipient, street lines, then the town line."""

    name: str
    lines: tuple[str, ...]
    locality: str
    postal_code: str
    country_code: str
    region: str = ""


@dataclass(frozen=True)
class SlipLine:
    sku: str
    title: str
    quantity: int
    unit_price: Money

    @property
    def total(self) -> Money:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Charge:
    """A priced row under the lines, added to the total: shipping, gift wrap, or a
    discount (a negative amount)."""

    label: str
    amount: Money


@dataclass(frozen=True)
class PackingSlip:
    """One parcel's slip. ``package`` names the parcel (as `PackageShipped.package` will);
    ``tax_included`` is the tax within the total, printed and not added."""

    channel: str
    order_number: str
    package: str
    ship_to: Address
    lines: tuple[SlipLine, ...]
    charges: tuple[Charge, ...] = ()
    tax_included: Money | None = None
    gift_note: str = ""
    show_prices: bool = True
    order_date: str = ""

    def currency(self) -> str:
        return self.lines[0].unit_price.currency_code

    def subtotal(self) -> Money:
        total = Money.of(self.currency(), 0)
        for line in self.lines:
            total = total + line.total
        return total

    def total(self) -> Money:
        total = self.subtotal()
        for charge in self.charges:
            total = total + charge.amount
        return total


@dataclass(frozen=True)
class PickStop:
    """A stop of the walk: take ``quantity`` of ``sku`` from ``bin`` into ``tote`` (empty
    for a single-order list, which needs no tote)."""

    bin: str
    sku: str
    title: str
    quantity: int
    tote: str = ""


@dataclass(frozen=True)
class PickListDocument:
    """A pick list as printed; ``stops`` in walking order."""

    list_id: str
    strategy: str
    node_id: str
    stops: tuple[PickStop, ...]
    zone: str = ""
    created: str = ""


@cache
def _fonts() -> None:
    folder = Path(reportlab.__file__).parent / "fonts"
    pdfmetrics.registerFont(TTFont(FONT, str(folder / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont(BOLD, str(folder / "VeraBd.ttf")))


def _styles() -> dict[str, ParagraphStyle]:
    _fonts()
    return {
        "title": ParagraphStyle("title", fontName=BOLD, fontSize=16, leading=20),
        "head": ParagraphStyle("head", fontName=BOLD, fontSize=10, leading=13),
        "body": ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12),
        "cell": ParagraphStyle("cell", fontName=FONT, fontSize=9, leading=11),
        "note": ParagraphStyle("note", fontName=FONT, fontSize=10, leading=14,
                               borderColor=colors.grey, borderWidth=0.5, borderPadding=6),
    }


def _text(value: str) -> str:
    return escape(value)


def check_slips(slips: Sequence[PackingSlip]) -> None:
    violations = Violations()
    violations.require(0 < len(slips) <= MAX_SLIPS, "slips",
                       f"a PDF holds 1 to {MAX_SLIPS} slips")
    for i, slip in enumerate(slips):
        path = f"slips[{i}]"
        violations.require(bool(slip.order_number), f"{path}.order_number", "must be given")
        violations.require(0 < len(slip.lines) <= MAX_SLIP_LINES, f"{path}.lines",
                           f"a slip holds 1 to {MAX_SLIP_LINES} lines")
        if not slip.lines:
            continue
        currency = slip.currency()
        amounts = [line.unit_price for line in slip.lines] + [c.amount for c in slip.charges]
        if slip.tax_included is not None:
            amounts.append(slip.tax_included)
        violations.require(all(a.currency_code == currency for a in amounts), path,
                           f"every amount of a slip must be in {currency}")
        for j, line in enumerate(slip.lines):
            violations.require(line.quantity > 0, f"{path}.lines[{j}].quantity",
                               "must be at least 1")
    violations.raise_if_any()


def _slip_flowables(slip: PackingSlip, styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    body = styles["body"]
    address = slip.ship_to
    town = " ".join(part for part in (address.postal_code, address.locality) if part)
    ship_to = "<br/>".join(_text(part) for part in (
        address.name, *address.lines, town, address.region, address.country_code) if part)
    facts = [f"Order {_text(slip.order_number)}", f"Channel: {_text(slip.channel)}",
             f"Parcel: {_text(slip.package)}"]
    if slip.order_date:
        facts.append(f"Order date: {_text(slip.order_date)}")
    header = Table(
        [[Paragraph("<br/>".join(facts), body),
          Paragraph(f"<b>Ship to</b><br/>{ship_to}", body)]],
        colWidths=[95 * mm, 80 * mm])
    header.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                ("FONTNAME", (0, 0), (-1, -1), FONT)]))

    cell = styles["cell"]
    if slip.show_prices:
        rows: list[list[object]] = [["SKU", "Item", "Qty", "Unit price", "Total"]]
        rows += [[Paragraph(_text(line.sku), cell), Paragraph(_text(line.title), cell),
                  str(line.quantity), str(line.unit_price), str(line.total)]
                 for line in slip.lines]
        widths = [32 * mm, 73 * mm, 14 * mm, 28 * mm, 28 * mm]
    else:
        rows = [["SKU", "Item", "Qty"]]
        rows += [[Paragraph(_text(line.sku), cell), Paragraph(_text(line.title), cell),
                  str(line.quantity)] for line in slip.lines]
        widths = [40 * mm, 115 * mm, 20 * mm]
    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), FONT), ("FONTNAME", (0, 0), (-1, 0), BOLD),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("LINEBELOW", (0, 0), (-1, 0), 0.75, colors.black),
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
        ("ALIGN", (2, 0), (-1, -1), "RIGHT"), ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))

    flowables: list[Flowable] = [
        Paragraph("Packing slip", styles["title"]), Spacer(1, 4 * mm), header,
        Spacer(1, 6 * mm), table, Spacer(1, 4 * mm)]
    if slip.show_prices:
        sums = [["Subtotal", str(slip.subtotal())]]
        sums += [[charge.label, str(charge.amount)] for charge in slip.charges]
        sums.append(["Total", str(slip.total())])
        if slip.tax_included is not None:
            sums.append(["Tax included", str(slip.tax_included)])
        totals = Table(sums, colWidths=[40 * mm, 28 * mm], hAlign="RIGHT")
        total_row = len(sums) - (2 if slip.tax_included is not None else 1)
        totals.setStyle(TableStyle([
            ("FONTNAME", (0, 0), (-1, -1), FONT), ("FONTSIZE", (0, 0), (-1, -1), 9),
            ("FONTNAME", (0, total_row), (-1, total_row), BOLD),
            ("LINEABOVE", (0, total_row), (-1, total_row), 0.75, colors.black),
            ("ALIGN", (1, 0), (1, -1), "RIGHT"),
        ]))
        flowables.append(KeepTogether([totals]))
    if slip.gift_note:
        flowables += [Spacer(1, 6 * mm), Paragraph("Gift note", styles["head"]),
                      Spacer(1, 2 * mm),
                      Paragraph(_text(slip.gift_note).replace("\n", "<br/>"),
                                styles["note"])]
    return flowables


def _build(flowables: list[Flowable], title: str) -> bytes:
    out = io.BytesIO()
    document = SimpleDocTemplate(out, pagesize=A4, title=title, leftMargin=17 * mm,
                                 rightMargin=17 * mm, topMargin=15 * mm, bottomMargin=15 * mm,
                                 invariant=True)
    document.build(flowables)
    return out.getvalue()


def packing_slips_pdf(slips: Sequence[PackingSlip]) -> bytes:
    """One PDF of the slips in the order given, each starting on a page of its own."""
    check_slips(slips)
    styles = _styles()
    flowables: list[Flowable] = []
    for i, slip in enumerate(slips):
        if i:
            flowables.append(PageBreak())
        flowables += _slip_flowables(slip, styles)
    title = (f"Packing slip {slips[0].order_number}" if len(slips) == 1
             else f"{len(slips)} packing slips")
    return _build(flowables, title)


def packing_slip_pdf(slip: PackingSlip) -> bytes:
    return packing_slips_pdf([slip])


def check_pick_list(pick_list: PickListDocument) -> None:
    violations = Violations()
    violations.require(bool(pick_list.list_id) and pick_list.list_id.isascii(), "list_id",
                       "must be given, in ASCII (it is printed as Code 128)")
    violations.require(0 < len(pick_list.stops) <= MAX_PICK_STOPS, "stops",
                       f"a pick list has 1 to {MAX_PICK_STOPS} stops")
    for i, stop in enumerate(pick_list.stops):
        violations.require(stop.quantity > 0, f"stops[{i}].quantity", "must be at least 1")
    violations.raise_if_any()


def pick_list_pdf(pick_list: PickListDocument) -> bytes:
    check_pick_list(pick_list)
    styles = _styles()
    barcode = createBarcodeDrawing("Code128", value=pick_list.list_id, barHeight=14 * mm,
                                   barWidth=0.33 * mm, humanReadable=True, quiet=True)
    facts = [f"Strategy: {_text(pick_list.strategy)}", f"Node: {_text(pick_list.node_id)}",
             f"Stops: {len(pick_list.stops)}",
             f"Units: {sum(stop.quantity for stop in pick_list.stops)}"]
    if pick_list.zone:
        facts.insert(1, f"Zone: {_text(pick_list.zone)}")
    if pick_list.created:
        facts.append(f"Created: {_text(pick_list.created)}")
    header = Table([[Paragraph("<br/>".join(facts), styles["body"]), barcode]],
                   colWidths=[95 * mm, 80 * mm])
    header.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                                ("ALIGN", (1, 0), (1, 0), "RIGHT")]))
    cell = styles["cell"]
    rows: list[list[object]] = [["#", "Bin", "SKU", "Item", "Qty", "Tote", "Done"]]
    rows += [[str(n), Paragraph(_text(stop.bin), cell), Paragraph(_text(stop.sku), cell),
              Paragraph(_text(stop.title), cell), str(stop.quantity), stop.tote, ""]
             for n, stop in enumerate(pick_list.stops, start=1)]
    table = Table(rows, colWidths=[10 * mm, 26 * mm, 30 * mm, 67 * mm, 12 * mm, 18 * mm,
                                   12 * mm], repeatRows=1)
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, -1), FONT), ("FONTNAME", (0, 0), (-1, 0), BOLD),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
        ("LINEBELOW", (0, 0), (-1, 0), 0.75, colors.black),
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
        ("ALIGN", (4, 0), (4, -1), "RIGHT"), ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BOX", (6, 1), (6, -1), 0.5, colors.black),
        ("INNERGRID", (6, 1), (6, -1), 0.5, colors.black),
    ]))
    flowables: list[Flowable] = [
        Paragraph(f"Pick list {_text(pick_list.list_id)}", styles["title"]),
        Spacer(1, 4 * mm), header, Spacer(1, 6 * mm), table]
    return _build(flowables, f"Pick list {pick_list.list_id}")
