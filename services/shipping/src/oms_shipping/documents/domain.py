"""Printable documents, pure: data in, bytes out. A 4x6 inch label as PDF (reportlab, with a
Code 128 barcode of the tracking number) and as Zebra ZPL II, and a manifest as PDF.

Documents are rendered from the stored label each time they are asked for rather than
stored: the label row is the record, and a reprint is byte for byte the first print
(reportlab's ``invariant`` mode leaves out the creation time and the random document id)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from reportlab.graphics.barcode import code128
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, inch
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.pdfgen import canvas
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

PDF = "application/pdf"
ZPL = "application/zpl"
LABEL_SIZE = (4 * inch, 6 * inch)
# Zebra printers of 8 dots per mm (203 dpi): a 4x6 inch label is 812 x 1218 dots.
ZPL_DOTS_PER_INCH = 203
MARGIN = 12
# Code 128 bars: never narrower than this (points); a scanner reads 0.25 mm bars and up.
MIN_BAR_WIDTH = 0.8
MAX_BAR_WIDTH = 1.6


@dataclass(frozen=True)
class PrintedAddress:
    lines: tuple[str, ...]
    locality: str = ""
    administrative_area: str = ""
    postal_code: str = ""
    region_code: str = ""
    name: str = ""
    organization: str = ""

    def printed(self) -> list[str]:
        """The address as it is printed, one line each, empty parts left out."""
        city = " ".join(p for p in (self.locality, self.administrative_area, self.postal_code)
                        if p)
        return [line for line in (self.name, self.organization, *self.lines, city,
                                  self.region_code) if line]


@dataclass(frozen=True)
class LabelDocument:
    tracking_number: str
    carrier: str
    service: str
    ship_from: PrintedAddress
    ship_to: PrintedAddress
    weight_grams: int
    package: str
    ship_date: date
    orders: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManifestLine:
    tracking_number: str
    service: str
    package: str
    weight_grams: int
    destination: str


@dataclass(frozen=True)
class ManifestDocument:
    manifest: str
    carrier: str
    node_id: str
    ship_date: date
    closed_at: datetime
    lines: Sequence[ManifestLine]


def weight_text(grams: int) -> str:
    return f"{(Decimal(grams) / 1000).normalize():f} kg"


def label_pdf(label: LabelDocument) -> bytes:
    """The label on one 4x6 inch page: from, to, service and weight, the package reference,
    and the tracking number as Code 128 with its text beneath."""
    out = io.BytesIO()
    width, height = LABEL_SIZE
    page = canvas.Canvas(out, pagesize=LABEL_SIZE, invariant=1, pageCompression=1)
    page.setTitle(f"Label {label.tracking_number}")
    top = height - MARGIN

    page.setFont("Helvetica-Bold", 9)
    page.drawString(MARGIN, top - 9, "FROM")
    page.setFont("Helvetica", 8)
    y = top - 20
    for line in label.ship_from.printed()[:6]:
        page.drawString(MARGIN, y, line[:60])
        y -= 10
    page.setFont("Helvetica-Bold", 14)
    page.drawRightString(width - MARGIN, top - 14, label.carrier.upper()[:20])
    page.setFont("Helvetica", 8)
    page.drawRightString(width - MARGIN, top - 26, f"Ship date {label.ship_date.isoformat()}")

    y -= 6
    page.line(MARGIN, y, width - MARGIN, y)
    page.setFont("Helvetica-Bold", 10)
    page.drawString(MARGIN, y - 14, "SHIP TO")
    page.setFont("Helvetica-Bold", 13)
    y -= 32
    for line in label.ship_to.printed()[:7]:
        page.drawString(MARGIN + 8, y, line[:36])
        y -= 16

    y -= 4
    page.line(MARGIN, y, width - MARGIN, y)
    page.setFont("Helvetica-Bold", 12)
    page.drawString(MARGIN, y - 16, label.service[:34])
    page.setFont("Helvetica", 10)
    page.drawRightString(width - MARGIN, y - 16, weight_text(label.weight_grams))
    page.setFont("Helvetica", 7)
    page.drawString(MARGIN, y - 28, label.package[:70])
    if label.orders:
        page.drawString(MARGIN, y - 37, ", ".join(label.orders)[:80])

    barcode = _barcode(label.tracking_number, width - 2 * MARGIN)
    bar_y = MARGIN + 30
    barcode.drawOn(page, (width - barcode.width) / 2, bar_y)
    page.setFont("Helvetica-Bold", 12)
    page.drawCentredString(width / 2, MARGIN + 12, _spaced(label.tracking_number))
    page.showPage()
    page.save()
    return out.getvalue()


def _barcode(value: str, room: float) -> code128.Code128:
    """Code 128 as wide as the room allows, within the bar widths scanners read, with quiet
    zones of ten bars each side."""
    probe = code128.Code128(value, barWidth=1.0, quiet=1, lquiet=10, rquiet=10)
    bar_width = max(MIN_BAR_WIDTH, min(MAX_BAR_WIDTH, room / probe.width))
    return code128.Code128(value, barWidth=bar_width, barHeight=1.1 * inch, quiet=1,
                           lquiet=10 * bar_width, rquiet=10 * bar_width)


def _spaced(number: str) -> str:
    """Tracking numbers read aloud in groups of four."""
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4))


def _zpl_field(text: str) -> str:
    """Field data with ZPL's control characters escaped as hex under ``^FH``."""
    return "".join(f"_{ord(c):02X}" if c in "^~_" else c for c in text)


def label_zpl(label: LabelDocument) -> bytes:
    """The same label in ZPL II for 203 dpi thermal printers, UTF-8 (``^CI28``)."""
    dots = ZPL_DOTS_PER_INCH
    commands = ["^XA", "^CI28", f"^PW{4 * dots}", f"^LL{6 * dots}", "^LH0,0"]

    def text(x: int, y: int, size: int, value: str) -> None:
        commands.append(f"^FO{x},{y}^A0N,{size},{size}^FH_^FD{_zpl_field(value)}^FS")

    text(30, 30, 26, "FROM")
    y = 62
    for line in label.ship_from.printed()[:6]:
        text(30, y, 22, line[:60])
        y += 26
    text(560, 30, 40, label.carrier.upper()[:12])
    text(560, 80, 22, f"Ship date {label.ship_date.isoformat()}")
    y += 10
    commands.append(f"^FO30,{y}^GB752,3,3^FS")
    text(30, y + 16, 28, "SHIP TO")
    y += 56
    for line in label.ship_to.printed()[:7]:
        text(50, y, 38, line[:36])
        y += 44
    commands.append(f"^FO30,{y}^GB752,3,3^FS")
    text(30, y + 16, 34, label.service[:34])
    text(600, y + 16, 30, weight_text(label.weight_grams))
    text(30, y + 60, 20, label.package[:70])
    if label.orders:
        text(30, y + 86, 20, ", ".join(label.orders)[:80])
    # ^BC: Code 128, 240 dots high, the human-readable line printed below, no check digit of
    # ZPL's own (Code 128 carries its mandatory mod-103 check anyway), automatic subsets (long
    # digit runs in subset C, so a 22-digit number still fits the label).
    commands.append(f"^FO60,880^BY3^BCN,240,Y,N,N,A^FH_^FD{_zpl_field(label.tracking_number)}^FS")
    commands.append("^XZ")
    return ("\n".join(commands) + "\n").encode()


def manifest_pdf(manifest: ManifestDocument) -> bytes:
    """The manifest on A4 pages: its carrier, node, day and totals, a Code 128 of its name
    for the driver's scanner, and one row per parcel."""
    out = io.BytesIO()
    styles = getSampleStyleSheet()
    doc = SimpleDocTemplate(out, pagesize=A4, invariant=1, title=manifest.manifest,
                            leftMargin=36, rightMargin=36, topMargin=36, bottomMargin=36)
    total = sum(line.weight_grams for line in manifest.lines)
    story = [
        Paragraph(f"Manifest {manifest.manifest}", styles["Title"]),
        Paragraph(f"Carrier <b>{_escape(manifest.carrier)}</b> · node "
                  f"<b>{_escape(manifest.node_id)}</b> · ship date "
                  f"<b>{manifest.ship_date.isoformat()}</b> · closed "
                  f"{manifest.closed_at.isoformat(timespec='minutes')}", styles["Normal"]),
        Paragraph(f"{len(manifest.lines)} parcels, {weight_text(total)}", styles["Normal"]),
        Spacer(1, 8),
        code128.Code128(manifest.manifest, barHeight=36, barWidth=0.9),
        Spacer(1, 12),
    ]
    rows = [["#", "Tracking number", "Service", "Package", "Weight", "To"]]
    rows += [[str(i), line.tracking_number, line.service[:28], line.package[-36:],
              weight_text(line.weight_grams), line.destination[:24]]
             for i, line in enumerate(manifest.lines, start=1)]
    table = LongTable(rows, repeatRows=1, colWidths=[28, 130, 100, 130, 50, 85])
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
        ("FONT", (0, 1), (-1, -1), "Helvetica", 7),
        ("LINEBELOW", (0, 0), (-1, 0), 0.75, colors.black),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.whitesmoke]),
    ]))
    story.append(table)
    doc.build(story)
    return out.getvalue()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
