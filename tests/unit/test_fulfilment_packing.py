"""Packing without a server: scans verified against a parcel's lines, and the box choice.
Every expected figure is worked out by hand in the comments beside it."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oms.fulfilment.v1 import events_pb2
from oms_fulfilment.cartonisation.domain import (
    MAX_CARTON_UNITS,
    Box,
    NoBoxFits,
    PackLine,
    ParcelLine,
    cartonise,
)
from oms_fulfilment.packing.domain import (
    ExpectedLine,
    PackageStatus,
    PackingTally,
    ParcelIncomplete,
    ParcelScans,
    ParcelSealed,
    RefusalReason,
    VerifiedLine,
    gtin14,
    order_status,
)
from oms_platform.errors import InvalidArgument

MUG_GTIN = "4006381333931"  # EAN-13, check digit 1
A = ("orders/1", "1")
B = ("orders/1", "2")
C = ("orders/2", "1")


def parcel() -> ParcelScans:
    # A merged shipment: two orders, the same mug in both.
    return ParcelScans.start([
        ExpectedLine("orders/1", "1", "MUG-RED", 2, gtin=MUG_GTIN),
        ExpectedLine("orders/1", "2", "TEA-GRN", 1),
        ExpectedLine("orders/2", "1", "MUG-RED", 1, gtin=MUG_GTIN),
    ])


def scan_all(scans: ParcelScans, *codes: str) -> ParcelScans:
    for code in codes:
        scans, _ = scans.scan(code)
    return scans


# --- scan verification ---------------------------------------------------------------------

def test_gtins_of_every_length_are_checked_and_compared_as_gtin14() -> None:
    assert gtin14("96385074") == "00000096385074"          # GTIN-8
    assert gtin14("036000291452") == "00036000291452"      # UPC-A
    assert gtin14("0036000291452") == "00036000291452"     # the same as EAN-13
    assert gtin14("10012345678902") == "10012345678902"    # GTIN-14
    assert gtin14("4006381333932") is None                 # check digit should be 1
    assert gtin14("MUG-RED") is None


def test_a_unit_is_accepted_by_gtin_or_by_sku_into_the_first_line_missing_it() -> None:
    scans, first = parcel().scan(MUG_GTIN)
    assert first.accepted and first.line == A and first.units_missing == 3
    scans, second = scans.scan("MUG-RED")
    assert second.line == A
    # Line A is full: the third mug goes to order 2's line.
    scans, third = scans.scan(MUG_GTIN)
    assert third.accepted and third.line == C and third.units_missing == 1
    assert scans.missing() == {B: 1}


def test_a_upc_a_label_matches_the_ean13_of_the_line() -> None:
    scans = ParcelScans.start([ExpectedLine("orders/9", "1", "SOAP", 1, gtin="036000291452")])
    scans, result = scans.scan("0036000291452")
    assert result.accepted and scans.complete


def test_a_wrong_sku_is_refused_counted_and_changes_nothing() -> None:
    before, _ = parcel().scan(MUG_GTIN)
    after, result = before.scan("TEA-BLK")
    assert not result.accepted and result.reason is RefusalReason.WRONG_SKU
    # Blamed on the first line still missing units: line A has 1 of 2.
    assert result.line == A
    assert after.verified == before.verified and after.missing() == before.missing()
    assert after.refused == {A: 1}
    assert after.refusals == {RefusalReason.WRONG_SKU: 1}


def test_a_valid_gtin_of_another_product_is_a_wrong_sku() -> None:
    _, result = parcel().scan("96385074")
    assert result.reason is RefusalReason.WRONG_SKU and result.line == A


def test_an_extra_unit_is_refused_and_counted_against_its_line() -> None:
    scans = scan_all(parcel(), MUG_GTIN, MUG_GTIN, MUG_GTIN, "TEA-GRN")
    assert scans.complete
    after, result = scans.scan("TEA-GRN")
    assert (result.accepted, result.reason, result.line) == (False, RefusalReason.EXTRA_UNIT, B)
    assert after.verified == scans.verified
    after, result = after.scan(MUG_GTIN)
    assert (result.reason, result.line) == (RefusalReason.EXTRA_UNIT, A)
    assert after.refused == {B: 1, A: 1}


def test_the_selected_line_takes_only_its_own_units() -> None:
    # The packer works on order 2's line: a mug counts there, even though line A misses two.
    scans, result = parcel().scan(MUG_GTIN, for_line=C)
    assert result.accepted and result.line == C
    # A tea brought for that line is wrong for it, and blamed on it.
    scans, result = scans.scan("TEA-GRN", for_line=C)
    assert (result.accepted, result.reason, result.line) == (
        False, RefusalReason.WRONG_SKU, C)
    assert scans.missing() == {A: 2, B: 1}


def test_a_misread_gtin_is_refused_by_reason_but_blames_no_line() -> None:
    after, result = parcel().scan("4006381333932")
    assert (result.accepted, result.reason, result.line) == (
        False, RefusalReason.UNREADABLE, None)
    assert after.refused == {} and after.refusals == {RefusalReason.UNREADABLE: 1}
    assert all(line.units_refused == 0 for line in after.tally().lines)


def test_a_parcel_cannot_seal_until_every_unit_is_scanned() -> None:
    scans = scan_all(parcel(), MUG_GTIN, MUG_GTIN, MUG_GTIN)
    with pytest.raises(ParcelIncomplete) as missing:
        scans.seal()
    assert missing.value.metadata == {"orders/1/lines/2": "1"}
    assert not scans.sealed
    scans = scan_all(scans, "TEA-GRN")
    sealed, _ = scans.seal()
    assert sealed.sealed
    with pytest.raises(ParcelSealed):
        sealed.scan("TEA-GRN")


def test_the_tally_is_what_packing_verified_carries() -> None:
    scans = scan_all(parcel(), MUG_GTIN, "COFFEE", MUG_GTIN, MUG_GTIN, MUG_GTIN,
                     "4006381333932", "TEA-GRN")
    # COFFEE: wrong SKU, blamed on A (1 of 2 in). The fourth mug: extra, on A.
    # The misread: by reason only.
    sealed, tally = scans.seal()
    assert tally == PackingTally(
        lines=(VerifiedLine("orders/1", "1", "MUG-RED", 2, 2),
               VerifiedLine("orders/1", "2", "TEA-GRN", 1, 0),
               VerifiedLine("orders/2", "1", "MUG-RED", 1, 0)),
        refusals={RefusalReason.WRONG_SKU: 1, RefusalReason.EXTRA_UNIT: 1,
                  RefusalReason.UNREADABLE: 1})
    # Field for field the event's lines; sealing again gives the same tally.
    event = events_pb2.PackingVerified(
        lines=[events_pb2.VerifiedLine(**asdict(line)) for line in tally.lines])
    assert [(line.units_verified, line.units_refused) for line in event.lines] == [
        (2, 2), (1, 0), (1, 0)]
    assert sealed.seal()[1] == tally


def test_bad_lines_and_bad_scans_are_refused_with_every_violation() -> None:
    with pytest.raises(InvalidArgument) as bad:
        ParcelScans.start([ExpectedLine("orders/1", "1", "", 0, gtin="4006381333932"),
                           ExpectedLine("orders/1", "1", "TEA", 1)])
    assert {v.field for v in bad.value.violations} == {
        "lines[0].sku", "lines[0].quantity", "lines[0].gtin", "lines[1]"}
    with pytest.raises(InvalidArgument) as bad:
        parcel().scan("  ", for_line=("orders/3", "1"))
    assert {v.field for v in bad.value.violations} == {"code", "for_line"}


# --- cartonisation -------------------------------------------------------------------------

# Three standard boxes: inner mm, own weight g, most gross weight g. Volumes 3, 9 and 30 L.
S = Box("S", 200, 150, 100, weight_g=150, max_weight_g=5_000)
M = Box("M", 300, 200, 150, weight_g=250, max_weight_g=10_000)
L = Box("L", 400, 300, 250, weight_g=400, max_weight_g=20_000)
BOXES = [L, S, M]


def line(line_id: str, dims: tuple[int, int, int], weight_g: int, quantity: int = 1, *,
         fragile: bool = False, sku: str | None = None) -> PackLine:
    return PackLine("orders/1", line_id, sku or f"SKU-{line_id}", quantity, *dims,
                    weight_g=weight_g, fragile=fragile)


def inside(parcel_box: Box, placements) -> bool:
    for p in placements:
        if (p.x + p.dims[0] > parcel_box.length_mm or p.y + p.dims[1] > parcel_box.width_mm
                or p.z + p.dims[2] > parcel_box.height_mm):
            return False
    for i, p in enumerate(placements):
        for q in placements[i + 1:]:
            if (p.x < q.x + q.dims[0] and q.x < p.x + p.dims[0]
                    and p.y < q.y + q.dims[1] and q.y < p.y + p.dims[1]
                    and p.z < q.z + q.dims[2] and q.z < p.z + p.dims[2]):
                return False
    return True


def test_the_smallest_box_that_holds_the_items_wins() -> None:
    (parcel_,) = cartonise([line("1", (180, 140, 90), 500)], BOXES)
    assert parcel_.box == S
    # 500 g of goods and the 150 g box; nothing fragile, so no material.
    assert (parcel_.weight_g, parcel_.materials) == (650, ())
    assert parcel_.lines == (ParcelLine("orders/1", "1", "SKU-1", 1),)


def test_of_two_boxes_of_one_volume_the_lighter_wins() -> None:
    heavy = Box("S-double-wall", 200, 150, 100, weight_g=300, max_weight_g=8_000)
    (parcel_,) = cartonise([line("1", (100, 100, 50), 200)], [heavy, S, M])
    assert parcel_.box == S


def test_an_item_fits_the_small_box_only_turned() -> None:
    # 100 x 50 x 190 stands too tall for S (height 100); lying as 190 x 100 x 50 it fits.
    (parcel_,) = cartonise([line("1", (100, 50, 190), 300)], BOXES)
    assert parcel_.box == S
    (placed,) = parcel_.placements
    assert sorted(placed.dims) == [50, 100, 190] and placed.dims != (100, 50, 190)
    assert inside(S, parcel_.placements)


def test_two_items_fill_the_small_box_exactly_only_standing() -> None:
    # Two 75 x 100 x 200 units are 2 x 1.5 L = S's 3 L: they fit only as 200 x 75 x 100
    # side by side. Lying flat (200 x 100 x 75) the second one no longer fits.
    (parcel_,) = cartonise([line("1", (75, 100, 200), 400, quantity=2)], BOXES)
    assert parcel_.box == S
    assert {p.dims for p in parcel_.placements} == {(200, 75, 100)}
    assert inside(S, parcel_.placements)
    assert parcel_.weight_g == 2 * 400 + 150


def test_items_that_no_box_holds_together_go_into_two_parcels() -> None:
    # Two 380 x 280 x 120 units only fit L, stacked (240 of 250 mm). With the 180 x 140 x 90
    # unit beside them they need 27.8 L of L's 30 L, but no room is left anywhere that is
    # 90 mm in every direction: the small unit opens a second parcel, which then moves down
    # from L to S, the smallest box that holds it.
    parcels = cartonise([line("1", (380, 280, 120), 4_000, quantity=2),
                         line("2", (180, 140, 90), 500)], BOXES)
    assert [p.box for p in parcels] == [L, S]
    assert parcels[0].lines == (ParcelLine("orders/1", "1", "SKU-1", 2),)
    assert parcels[1].lines == (ParcelLine("orders/1", "2", "SKU-2", 1),)
    assert [p.weight_g for p in parcels] == [2 * 4_000 + 400, 500 + 150]
    assert all(inside(p.box, p.placements) for p in parcels)


def test_weight_splits_parcels_that_size_alone_would_not() -> None:
    # Four 9 kg units of 100 x 100 x 100 fit L by size; L takes 20 kg gross, so 2 per box
    # (2 x 9000 + 400 = 18.4 kg; a third would make 27.4 kg). M takes 10 kg: 1 unit.
    parcels = cartonise([line("1", (100, 100, 100), 9_000, quantity=4)], BOXES)
    assert [p.box for p in parcels] == [L, L]
    assert [p.weight_g for p in parcels] == [18_400, 18_400]
    assert all(p.weight_g <= p.box.max_weight_g for p in parcels)


def test_a_fragile_item_gets_its_wrap_its_void_fill_and_their_weight() -> None:
    # 190 x 140 x 90 fits S bare; wrapped with 10 mm on every side it is 210 x 160 x 110,
    # too long for S, so M. Wrap: surface 2 x (210x160 + 160x110 + 210x110) = 148,600 mm²
    # = 0.1486 m² x 60 g/m² = 8.9 -> 9 g. Void fill: M's 9 L less 3.696 L = 5.304 -> 6 L at
    # 10 g/L = 60 g. Gross: 400 + 9 + 60 + 250 = 719 g.
    (bare,) = cartonise([line("1", (190, 140, 90), 400)], BOXES)
    assert (bare.box, bare.weight_g, bare.materials) == (S, 550, ())
    (wrapped,) = cartonise([line("1", (190, 140, 90), 400, fragile=True)], BOXES)
    assert wrapped.box == M
    assert [(m.material, m.quantity, m.weight_g) for m in wrapped.materials] == [
        ("bubble_wrap", 1, 9), ("paper_void_fill", 6, 60)]
    assert (wrapped.items_weight_g, wrapped.material_weight_g, wrapped.weight_g) == (
        400, 69, 719)
    assert sorted(wrapped.placements[0].dims) == [110, 160, 210]


def test_an_item_too_big_for_every_box_is_named_not_dropped() -> None:
    with pytest.raises(NoBoxFits) as unfit:
        cartonise([line("1", (180, 140, 90), 500),
                   line("2", (500, 100, 100), 800, sku="LAMP"),
                   line("3", (100, 100, 100), 25_000, sku="ANVIL")], BOXES)
    assert [(u.sku, u.reason) for u in unfit.value.unfit] == [
        ("LAMP", "larger than every box"), ("ANVIL", "too heavy for every box that it fits")]
    assert "LAMP of orders/1/lines/2 (500x100x100 mm, 800 g)" in unfit.value.message


def test_a_cartonisation_is_bounded_and_checks_its_input() -> None:
    with pytest.raises(InvalidArgument) as bad:
        cartonise([line("1", (0, 10, 10), -1, quantity=MAX_CARTON_UNITS + 1)],
                  [Box("S", 10, 10, 10, weight_g=50, max_weight_g=40)])
    assert {v.field for v in bad.value.violations} == {
        "boxes[0].max_weight_g", "lines", "lines[0].length_mm", "lines[0].weight_g"}


def test_ten_mixed_units_are_all_packed_and_none_overlaps() -> None:
    lines = [line("1", (120, 80, 60), 300, quantity=3), line("2", (250, 180, 40), 700),
             line("3", (90, 90, 90), 450, quantity=2, fragile=True),
             line("4", (60, 40, 30), 80, quantity=4)]
    parcels = cartonise(lines, BOXES)
    packed = sum(len(p.placements) for p in parcels)
    assert packed == 10
    assert all(inside(p.box, p.placements) and p.weight_g <= p.box.max_weight_g
               for p in parcels)



sides = st.integers(min_value=10, max_value=260)
pack_lines = st.lists(
    st.tuples(sides, sides, sides, st.integers(0, 6_000), st.integers(1, 4), st.booleans()),
    min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(pack_lines)
def test_every_unit_is_packed_once_inside_a_box_within_its_weight(drawn) -> None:
    # No unit here is heavier than L takes, so only size can make one unfit.
    lines = [line(str(i), (a, b, c), weight, quantity, fragile=fragile)
             for i, (a, b, c, weight, quantity, fragile) in enumerate(drawn)]
    try:
        parcels = cartonise(lines, BOXES)
    except NoBoxFits as unfit:
        assert unfit.unfit
        for u in unfit.unfit:
            assert u.reason == "larger than every box"
            assert not any(all(x <= y for x, y in zip(sorted(u.dims), sorted(b.dims),
                                                      strict=True)) for b in BOXES)
        return
    packed: Counter = Counter()
    for p in parcels:
        assert inside(p.box, p.placements)
        assert p.weight_g <= p.box.max_weight_g
        assert sum(pl.quantity for pl in p.lines) == len(p.placements)
        packed.update((placement.unit.line, placement.unit.index)
                      for placement in p.placements)
    assert packed == Counter({(l_.key, i): 1 for l_ in lines for i in range(l_.quantity)})


def test_the_fulfilment_order_follows_its_packages() -> None:
    S = PackageStatus
    assert order_status([S.PACKING, S.SEALED]) == "PACKING"
    assert order_status([S.SEALED, S.SEALED]) == "PACKED"
    assert order_status([S.SHIPPED, S.SEALED]) == "PARTIALLY_SHIPPED"
    assert order_status([S.SHIPPED, S.SHIPPED]) == "SHIPPED"
