"""Cartonisation, pure: which of a node's standard boxes a picked order goes into, with
what packaging material, in how many parcels, and what each weighs.

Units are packed into the node's standard boxes (inner dimensions in whole millimetres, own
weight, most gross weight) by a 3D fit that lets each unit lie in any of its 6 orientations:

1. A fragile unit is wrapped: each of its dimensions grows by twice the wrap's padding, and
   the wrap weighs its grams per m² of the wrapped unit's surface. A parcel holding a fragile
   unit is topped up with void fill by grams per litre of the room its units leave empty.
2. A unit that fits no box by size, or whose weight with its wrap and the lightest box that
   holds it is beyond that box's limit, is reported (``NoBoxFits``, naming every such unit),
   never dropped.
3. The smallest box by volume (then lightest, then by code) that holds every unit within its
   weight limit is the one parcel.
4. When none does, parcels are filled first-fit decreasing (units by volume, largest first):
   each unit goes into the first open parcel it fits, else opens a parcel in the largest box
   that holds it; then each parcel moves to the smallest box that still holds its units.
5. Gross weight = units + box + wrap + void fill, in grams rounded up.

Placement inside a box is by extreme points (Crainic, Perboli and Tadei 2008): after a unit
is placed, the three corners it offers and their projections toward the walls become
candidate positions; a unit takes the lowest, then rearmost, then leftmost position (and the
first orientation by a preference: flat, upright or narrow, each tried in turn for a box)
where it lies within the box and overlaps no other. The
fit is a heuristic: it may miss a packing that exists, never claims one that does not.

Why no library: ``py3dbp`` was last released in 2020, computes in floats (so a unit that
fits to the millimetre can be refused by rounding), only tries the corners of placed items,
and has no choice of the smallest box or of the number of parcels; the other 3D packers
there are are early single-author releases, and OR-Tools (maintained) would mean a CP-SAT
model and a large dependency for what, at these sizes, a short exact-integer heuristic
does in milliseconds.

Bounds: at most ``MAX_CARTON_UNITS`` units and ``MAX_BOXES`` boxes per call (the placement
is cubic in the units of a box).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import permutations

from oms_platform.errors import FailedPrecondition, Violations

MAX_CARTON_UNITS = 60
MAX_BOXES = 10
MAX_DIMENSION_MM = 10_000
MAX_WEIGHT_G = 1_000_000

LineKey = tuple[str, str]
"""An order line across orders: ("orders/{order}", line id)."""


Dims = tuple[int, int, int]


@dataclass(frozen=True)
class Box:
    """A standard box of a node: inner dimensions (mm), its own weight and the most the
    packed parcel may weigh, box included (g)."""

    code: str
    length_mm: int
    width_mm: int
    height_mm: int
    weight_g: int
    max_weight_g: int

    @property
    def dims(self) -> Dims:
        return self.length_mm, self.width_mm, self.height_mm

    @property
    def volume_mm3(self) -> int:
        return self.length_mm * self.width_mm * self.height_mm


@dataclass(frozen=True)
class PackLine:
    """Units of one order line to pack, with the product's size (mm), weight (g) per unit
    and fragility, as the catalogue gives them."""

    order: str
    line_id: str
    sku: str
    quantity: int
    length_mm: int
    width_mm: int
    height_mm: int
    weight_g: int
    fragile: bool = False

    @property
    def key(self) -> LineKey:
        return self.order, self.line_id


@dataclass(frozen=True)
class Packaging:
    """How fragile units are protected: the wrap adds ``wrap_padding_mm`` on every side and
    weighs ``wrap_g_per_m2`` of the wrapped surface; a parcel with a fragile unit gets
    ``void_fill_g_per_litre`` of void fill in the room left empty."""

    wrap: str = "bubble_wrap"
    wrap_padding_mm: int = 10
    wrap_g_per_m2: int = 60
    void_fill: str = "paper_void_fill"
    void_fill_g_per_litre: int = 10


@dataclass(frozen=True)
class Unit:
    """One unit of a line as packed: its size with any wrap, and its own weight."""

    line: LineKey
    sku: str
    index: int
    dims: Dims
    weight_g: int
    wrap_g: int
    fragile: bool

    @property
    def volume_mm3(self) -> int:
        return self.dims[0] * self.dims[1] * self.dims[2]


@dataclass(frozen=True)
class Placement:
    """Where a unit lies in its box: the corner nearest the origin and its extent along
    the box's length, width and height (its orientation), all in mm."""

    unit: Unit
    x: int
    y: int
    z: int
    dims: Dims


@dataclass(frozen=True)
class MaterialUse:
    material: str
    quantity: int
    """Units wrapped (wrap) or litres filled (void fill)."""
    weight_g: int


@dataclass(frozen=True)
class ParcelLine:
    order: str
    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class Parcel:
    box: Box
    lines: tuple[ParcelLine, ...]
    placements: tuple[Placement, ...]
    materials: tuple[MaterialUse, ...]
    items_weight_g: int

    @property
    def material_weight_g(self) -> int:
        return sum(use.weight_g for use in self.materials)

    @property
    def weight_g(self) -> int:
        return self.items_weight_g + self.box.weight_g + self.material_weight_g


@dataclass(frozen=True)
class Unfit:
    """A unit that no box takes, and why."""

    order: str
    line_id: str
    sku: str
    dims: Dims
    weight_g: int
    reason: str


class NoBoxFits(FailedPrecondition):
    reason = "NO_BOX_FITS"

    def __init__(self, unfit: Sequence[Unfit]) -> None:
        super().__init__(
            "no standard box takes " + "; ".join(
                f"{u.sku} of {u.order}/lines/{u.line_id} "
                f"({u.dims[0]}x{u.dims[1]}x{u.dims[2]} mm, {u.weight_g} g): {u.reason}"
                for u in unfit),
            metadata={f"{u.order}/lines/{u.line_id}": u.reason for u in unfit})
        self.unfit = tuple(unfit)


def check_cartonisation(lines: Sequence[PackLine], boxes: Sequence[Box],
                        packaging: Packaging) -> None:
    violations = Violations()
    violations.require(0 < len(boxes) <= MAX_BOXES, "boxes",
                       f"a node has 1 to {MAX_BOXES} standard boxes")
    codes: set[str] = set()
    for i, box in enumerate(boxes):
        path = f"boxes[{i}]"
        violations.require(bool(box.code) and box.code not in codes, f"{path}.code",
                           "must be given and unique")
        codes.add(box.code)
        for name, value in (("length_mm", box.length_mm), ("width_mm", box.width_mm),
                            ("height_mm", box.height_mm)):
            violations.require(0 < value <= MAX_DIMENSION_MM, f"{path}.{name}",
                               f"must be 1 to {MAX_DIMENSION_MM} mm")
        violations.require(box.weight_g >= 0, f"{path}.weight_g", "must not be negative")
        violations.require(box.weight_g < box.max_weight_g <= MAX_WEIGHT_G,
                           f"{path}.max_weight_g",
                           f"must be more than the box's own weight, at most {MAX_WEIGHT_G} g")
    violations.require(len(lines) > 0, "lines", "must hold at least one line")
    violations.require(sum(max(line.quantity, 0) for line in lines) <= MAX_CARTON_UNITS,
                       "lines", f"at most {MAX_CARTON_UNITS} units per cartonisation")
    keys: set[LineKey] = set()
    for i, line in enumerate(lines):
        path = f"lines[{i}]"
        violations.require(bool(line.order) and bool(line.line_id), path,
                           "must name the order and the line")
        violations.require(line.key not in keys, path, "names an order line twice")
        keys.add(line.key)
        violations.require(line.quantity > 0, f"{path}.quantity", "must be at least 1")
        for name, value in (("length_mm", line.length_mm), ("width_mm", line.width_mm),
                            ("height_mm", line.height_mm)):
            violations.require(0 < value <= MAX_DIMENSION_MM, f"{path}.{name}",
                               f"must be 1 to {MAX_DIMENSION_MM} mm")
        violations.require(0 <= line.weight_g <= MAX_WEIGHT_G, f"{path}.weight_g",
                           f"must be 0 to {MAX_WEIGHT_G} g")
    violations.require(packaging.wrap_padding_mm >= 0, "packaging.wrap_padding_mm",
                       "must not be negative")
    violations.require(packaging.wrap_g_per_m2 >= 0, "packaging.wrap_g_per_m2",
                       "must not be negative")
    violations.require(packaging.void_fill_g_per_litre >= 0,
                       "packaging.void_fill_g_per_litre", "must not be negative")
    violations.raise_if_any()


def _units(lines: Sequence[PackLine], packaging: Packaging) -> list[Unit]:
    units = []
    pad = 2 * packaging.wrap_padding_mm
    for line in lines:
        dims = (line.length_mm, line.width_mm, line.height_mm)
        wrap_g = 0
        if line.fragile:
            dims = (dims[0] + pad, dims[1] + pad, dims[2] + pad)
            surface_mm2 = 2 * (dims[0] * dims[1] + dims[1] * dims[2] + dims[0] * dims[2])
            wrap_g = math.ceil(surface_mm2 * packaging.wrap_g_per_m2 / 1_000_000)
        units.extend(Unit(line.key, line.sku, i, dims, line.weight_g, wrap_g, line.fragile)
                     for i in range(line.quantity))
    return units


def _flat(d: Dims) -> tuple[int, ...]:
    return d[2], -d[0], *d


def _upright(d: Dims) -> tuple[int, ...]:
    return -d[2], -d[0], *d


def _narrow(d: Dims) -> tuple[int, ...]:
    return d[1], -d[2], *d


# The orientation a unit tries first at a position. Lying flat leaves the most room above;
# when a box is not filled that way, standing units up or turning them narrow often fills it
# (two 200x75x100 units fill a 200x150x100 box only standing), so a box is tried with each
# preference before it is given up.
ORIENTATION_PREFERENCES = (_flat, _upright, _narrow)


def _orientations(dims: Dims, preference: Callable[[Dims], tuple[int, ...]]) -> list[Dims]:
    distinct: set[Dims] = {(a, b, c) for a, b, c in permutations(dims)}
    return sorted(distinct, key=preference)


def _fits_alone(dims: Dims, box: Box) -> bool:
    return all(a <= b for a, b in zip(sorted(dims), sorted(box.dims), strict=True))


def _overlaps(x: int, y: int, z: int, d: Dims, p: Placement) -> bool:
    return (x < p.x + p.dims[0] and p.x < x + d[0]
            and y < p.y + p.dims[1] and p.y < y + d[1]
            and z < p.z + p.dims[2] and p.z < z + d[2])


def _project(point: Dims, axis: int, placed: Sequence[Placement]) -> Dims:
    """The point moved toward the origin along ``axis`` until it meets a wall or a unit."""
    others = [a for a in range(3) if a != axis]
    stop = 0
    for p in placed:
        lo = (p.x, p.y, p.z)
        far = lo[axis] + p.dims[axis]
        if far <= point[axis] and far > stop and all(
                lo[a] <= point[a] < lo[a] + p.dims[a] for a in others):
            stop = far
    moved = list(point)
    moved[axis] = stop
    return moved[0], moved[1], moved[2]


class _BoxFill:
    """Units placed in one box so far, and the extreme points still open."""

    def __init__(self, box: Box, preference: Callable[[Dims], tuple[int, ...]] = _flat
                 ) -> None:
        self.box = box
        self.preference = preference
        self.placed: list[Placement] = []
        self.points: set[Dims] = {(0, 0, 0)}
        self.weight_g = 0

    def place(self, unit: Unit, gross_limit_g: int) -> bool:
        if self.weight_g + unit.weight_g + unit.wrap_g > gross_limit_g:
            return False
        length, width, height = self.box.dims
        for x, y, z in sorted(self.points, key=lambda p: (p[2], p[1], p[0])):
            for d in _orientations(unit.dims, self.preference):
                if x + d[0] > length or y + d[1] > width or z + d[2] > height:
                    continue
                if any(_overlaps(x, y, z, d, p) for p in self.placed):
                    continue
                self._add(Placement(unit, x, y, z, d))
                return True
        return False

    def _add(self, placement: Placement) -> None:
        self.placed.append(placement)
        self.weight_g += placement.unit.weight_g + placement.unit.wrap_g
        x, y, z = placement.x, placement.y, placement.z
        dx, dy, dz = placement.dims
        corners = [(x + dx, y, z), (x, y + dy, z), (x, y, z + dz)]
        for axis, corner in enumerate(corners):
            self.points.add(corner)
            for other in range(3):
                if other != axis:
                    self.points.add(_project(corner, other, self.placed))
        self.points = {
            p for p in self.points
            if p[0] < self.box.length_mm and p[1] < self.box.width_mm
            and p[2] < self.box.height_mm
            and not any(_overlaps(p[0], p[1], p[2], (1, 1, 1), q) for q in self.placed)}


def _decreasing(units: Iterable[Unit]) -> list[Unit]:
    return sorted(units, key=lambda u: (-u.volume_mm3, -max(u.dims), -u.weight_g,
                                        u.line, u.index))


def _void_fill_g(box: Box, units: Sequence[Unit], packaging: Packaging) -> tuple[int, int]:
    """Litres and grams of void fill for a parcel with a fragile unit (else none)."""
    if not any(u.fragile for u in units):
        return 0, 0
    empty_mm3 = max(box.volume_mm3 - sum(u.volume_mm3 for u in units), 0)
    litres = math.ceil(empty_mm3 / 1_000_000)
    return litres, litres * packaging.void_fill_g_per_litre


def _gross_g(box: Box, units: Sequence[Unit], packaging: Packaging) -> int:
    return (box.weight_g + sum(u.weight_g + u.wrap_g for u in units)
            + _void_fill_g(box, units, packaging)[1])


def _fill(box: Box, units: Sequence[Unit], packaging: Packaging) -> _BoxFill | None:
    """Every unit placed in the box within its weight limit, or None."""
    if (sum(u.volume_mm3 for u in units) > box.volume_mm3
            or _gross_g(box, units, packaging) > box.max_weight_g
            or not all(_fits_alone(u.dims, box) for u in units)):
        return None
    ordered = _decreasing(units)
    for preference in ORIENTATION_PREFERENCES:
        fill = _BoxFill(box, preference)
        if all(fill.place(unit, box.max_weight_g - box.weight_g) for unit in ordered):
            return fill
    return None


def _parcel(fill: _BoxFill, packaging: Packaging) -> Parcel:
    units = [p.unit for p in fill.placed]
    counts: Counter[tuple[LineKey, str]] = Counter((u.line, u.sku) for u in units)
    lines = tuple(ParcelLine(order, line_id, sku, quantity)
                  for ((order, line_id), sku), quantity in sorted(counts.items()))
    materials = []
    wrapped = [u for u in units if u.fragile]
    if wrapped:
        materials.append(MaterialUse(packaging.wrap, len(wrapped),
                                     sum(u.wrap_g for u in wrapped)))
        litres, grams = _void_fill_g(fill.box, units, packaging)
        materials.append(MaterialUse(packaging.void_fill, litres, grams))
    return Parcel(fill.box, lines, tuple(fill.placed), tuple(materials),
                  sum(u.weight_g for u in units))


def _by_size(boxes: Iterable[Box]) -> list[Box]:
    return sorted(boxes, key=lambda b: (b.volume_mm3, b.weight_g, b.code))


def cartonise(lines: Sequence[PackLine], boxes: Sequence[Box],
              packaging: Packaging = Packaging()) -> tuple[Parcel, ...]:
    """The parcels that carry the lines: one in the smallest box that holds everything,
    else several filled first-fit decreasing. Raises InvalidArgument for bad input and
    NoBoxFits naming every unit that no box takes."""
    check_cartonisation(lines, boxes, packaging)
    units = _units(lines, packaging)
    smallest_first = _by_size(boxes)

    unfit = []
    home: dict[tuple[LineKey, int], Box] = {}
    for unit in units:
        sized = [b for b in smallest_first if _fits_alone(unit.dims, b)]
        weighed = [b for b in sized if _gross_g(b, [unit], packaging) <= b.max_weight_g]
        if weighed:
            home[unit.line, unit.index] = weighed[-1]
        elif unit.index == 0:
            order, line_id = unit.line
            unfit.append(Unfit(order, line_id, unit.sku, unit.dims, unit.weight_g,
                               "too heavy for every box that it fits" if sized
                               else "larger than every box"))
    if unfit:
        raise NoBoxFits(unfit)

    for box in smallest_first:
        fill = _fill(box, units, packaging)
        if fill is not None:
            return (_parcel(fill, packaging),)

    fills: list[_BoxFill] = []
    for unit in _decreasing(units):
        for fill in fills:
            if (_fits_alone(unit.dims, fill.box)
                    and _gross_g(fill.box, [p.unit for p in fill.placed] + [unit],
                                 packaging) <= fill.box.max_weight_g
                    and fill.place(unit, fill.box.max_weight_g - fill.box.weight_g)):
                break
        else:
            fill = _BoxFill(home[unit.line, unit.index])
            placed = fill.place(unit, fill.box.max_weight_g - fill.box.weight_g)
            assert placed, "a unit always fits alone in the box chosen for it"
            fills.append(fill)

    parcels = []
    for fill in fills:
        contents = [p.unit for p in fill.placed]
        smaller = next((f for b in smallest_first if b.volume_mm3 <= fill.box.volume_mm3
                        and (f := _fill(b, contents, packaging)) is not None), fill)
        parcels.append(_parcel(smaller, packaging))
    return tuple(parcels)
