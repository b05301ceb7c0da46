"""The bench's arithmetic, kept pure so that a unit test can check it by hand: percentiles,
the median and spread of repeated runs, and the comparison of what PostgreSQL did per order
for the services and for the pgbench baseline (read from ``pg_stat_statements``)."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the two nearest ranks: p50 of 1..4 is 2.5.
    Exact for small samples, where a bucketed estimate would round p99 to the maximum."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """Repeated runs of one figure: the median is what we quote, the range how much to trust
    it on a machine shared with other work."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        ordered = sorted(values)
        if not ordered:
            raise ValueError("no runs")
        return cls(statistics.median(ordered), ordered[0], ordered[-1], len(ordered))

    @property
    def relative(self) -> float:
        """Half the range as a share of the median: 0.05 reads "± 5 %"."""
        return (self.high - self.low) / 2 / self.median if self.median else 0.0

    def text(self, digits: int = 1) -> str:
        return (f"{self.median:.{digits}f} (range {self.low:.{digits}f}..{self.high:.{digits}f}, "
                f"{self.runs} runs)")

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "low": self.low, "high": self.high, "runs": self.runs}


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> Spread:
    """Run i of a figure over run i of its baseline: the runs alternate, so each pair shared
    the machine's conditions of its moment."""
    if len(numerators) != len(denominators):
        raise ValueError("a ratio needs as many runs on both sides")
    return Spread.of(n / d for n, d in zip(numerators, denominators, strict=True))


# --------------------------------------------------------------------------- statements

_TRANSACTION = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
_TARGET = (
    (re.compile(r"^\s*INSERT\s+INTO\s+([\w.]+)", re.IGNORECASE), "INSERT"),
    (re.compile(r"^\s*UPDATE\s+([\w.]+)", re.IGNORECASE), "UPDATE"),
    (re.compile(r"^\s*DELETE\s+FROM\s+([\w.]+)", re.IGNORECASE), "DELETE"),
    (re.compile(r"^\s*(?:WITH\b.*?\)\s*)?SELECT\b.*?\bFROM\s+([a-z_][\w.]*)",
                re.IGNORECASE | re.DOTALL), "SELECT"),
)


def statement_key(query: str) -> str:
    """What a statement does, whatever its spelling: ``INSERT outbox``, ``SELECT stock_levels``,
    ``transaction``; a SELECT without a table (``SELECT pg_try_advisory_xact_lock``) is
    ``SELECT <function>``. SQLAlchemy's and pgbench's texts of the same work share a key."""
    text = " ".join(query.split())
    if _TRANSACTION.match(text):
        return "transaction"
    for pattern, verb in _TARGET:
        match = pattern.match(text)
        if match:
            table = match.group(1).lower().rsplit(".", 1)[-1]
            return f"{verb} {table}"
    function = re.match(r"^\s*SELECT\s+([a-z_]+)\s*\(", text, re.IGNORECASE)
    if function:
        return f"SELECT {function.group(1).lower()}()"
    return text.split(" ", 1)[0].upper() or "?"


@dataclass(frozen=True)
class PerOrder:
    """What PostgreSQL did for one order under one key: statements called, rows they
    returned or changed, WAL bytes they wrote."""

    calls: float
    rows: float
    wal_bytes: float


StatementRow = tuple[str, str, int, int, int]  # (database label, query, calls, rows, wal)


def _sums(rows: Iterable[StatementRow]) -> dict[tuple[str, str], list[int]]:
    sums: dict[tuple[str, str], list[int]] = {}
    for database, query, calls, count, wal in rows:
        total = sums.setdefault((database, statement_key(query)), [0, 0, 0])
        total[0] += calls
        total[1] += count
        total[2] += wal
    return sums


def per_order(rows: Iterable[StatementRow],
              anchors: Mapping[str, str]) -> dict[tuple[str, str], PerOrder]:
    """``pg_stat_statements`` rows summed by (database label, statement key), per order of
    that database: an order there is a row of its anchor statement (``INSERT orders`` in the
    orders database), so a side that ran for a fixed time needs no count of its own.
    Databases without an anchor are left out."""
    sums = _sums(rows)
    result = {}
    for (database, key), (calls, count, wal) in sorted(sums.items()):
        anchor = anchors.get(database)
        if anchor is None:
            continue
        orders = sums.get((database, anchor), [0, 0, 0])[1]
        if orders <= 0:
            raise ValueError(f"no {anchor!r} rows in {database}: no orders to count by")
        result[(database, key)] = PerOrder(calls / orders, count / orders, wal / orders)
    return result


def database_totals(rows: Iterable[StatementRow], orders: int) -> dict[str, PerOrder]:
    """Calls, rows and WAL per order by database alone (for the databases the baseline does
    not mirror)."""
    totals: dict[str, list[int]] = {}
    for (database, _key), values in _sums(rows).items():
        total = totals.setdefault(database, [0, 0, 0])
        for i in range(3):
            total[i] += values[i]
    return {db: PerOrder(c / orders, r / orders, w / orders)
            for db, (c, r, w) in sorted(totals.items())}


@dataclass(frozen=True)
class Comparison:
    key: tuple[str, str]
    sides: tuple[PerOrder | None, ...]
    matches: bool
    judged: bool


WRITES = ("INSERT ", "UPDATE ", "DELETE ")
NOISE = 0.05  # rows per order below which a statement is background (pings, sweeps)


def compare(sides: Sequence[Mapping[tuple[str, str], PerOrder]], *, judged: Sequence[int] = (1,),
            tolerance: float = 0.25) -> list[Comparison]:
    """Each key on any side. The first side is the pipeline; a write (INSERT, UPDATE, DELETE)
    matches when each side in ``judged`` changes as many rows per order within ``tolerance``
    (a share of the pipeline's). Rows, not calls: a batched statement makes one call for
    many orders, the same rows. Reads, writes of background work (under ``NOISE`` rows an
    order on every side) and the sides not judged are shown, not judged: a baseline batched
    wider than the pipeline's fetches reads and updates a level once for many orders."""
    keys = sorted({key for side in sides for key in side})
    result = []
    for key in keys:
        values = tuple(side.get(key) for side in sides)
        reference = values[0].rows if values[0] else 0.0
        rows = [values[i].rows if values[i] else 0.0 for i in judged]
        is_judged = key[1].startswith(WRITES) and max([reference, *rows]) >= NOISE
        matches = not is_judged or all(
            abs(r - reference) <= tolerance * reference for r in rows)
        result.append(Comparison(key, values, matches, is_judged))
    return result


def comparison_table(comparisons: Sequence[Comparison], headings: Sequence[str]) -> str:
    """The comparison as text: one line per key, calls / rows / WAL bytes per order for each
    side; ``=`` before a judged key that matches, ``!`` before one that does not."""
    width = max([len(f"{d} {k}") for (d, k) in (c.key for c in comparisons)] + [20])
    head = f"    {'per order':<{width}}" + "".join(
        f" | {h:^24}" for h in headings)
    sub = f"    {'':<{width}}" + " | calls   rows     WAL B" * len(headings)
    lines = [head, sub]
    for c in comparisons:
        cells = "".join(
            " |      -       -        -" if v is None else
            f" | {v.calls:5.2f} {v.rows:6.2f} {v.wal_bytes:9.0f}" for v in c.sides)
        mark = ("=" if c.matches else "!") if c.judged else " "
        lines.append(f"  {mark} {c.key[0] + ' ' + c.key[1]:<{width}}{cells}")
    totals = [PerOrder(sum(v.calls for c in comparisons if (v := c.sides[i])),
                       sum(v.rows for c in comparisons if (v := c.sides[i])),
                       sum(v.wal_bytes for c in comparisons if (v := c.sides[i])))
              for i in range(len(headings))]
    lines.append(f"    {'all':<{width}}" + "".join(
        f" | {t.calls:5.2f} {t.rows:6.2f} {t.wal_bytes:9.0f}" for t in totals))
    return "\n".join(lines)
