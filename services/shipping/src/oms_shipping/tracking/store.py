"""Storage of tracking: events against labels, and the label's tracking status and last scan.

:func:`record` is the one way events are stored, for RecordTrackingEvents and the no-scan sweep
alike, in the caller's transaction and with a constant number of statements per call: the
labels of the events are locked (in id order, so two calls over the same parcels wait for
each other instead of deadlocking), the events inserted in one statement whose unique key
drops those already known (a concurrent call inserting the same event waits on the key and
then drops it), the journeys of the parcels that got something new read in one statement,
and their labels updated in one. A parcel's new status is the domain's (:func:`domain.track`);
the update also refuses in SQL to move a final status, so the rule holds even for a writer
that did not lock first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    String,
    and_,
    case,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms_shipping.tables import labels, tracking_events
from oms_shipping.tracking.domain import (
    FINAL,
    MAX_HISTORY,
    MAX_JOURNEY,
    ON_THE_WAY,
    LabelRef,
    Parcel,
    Progress,
    Recorded,
    Scan,
    TrackingStatus,
    track,
)

_LABEL_COLUMNS = (labels.c.id, labels.c.carrier, labels.c.tracking_number, labels.c.package,
                  labels.c.orders, labels.c.node_id, labels.c.estimated_delivery_date,
                  labels.c.tracking_status, labels.c.last_event_time)


def _label(row: Any) -> LabelRef:
    return LabelRef(id=row.id, carrier=row.carrier, tracking_number=row.tracking_number,
                    package=row.package, orders=tuple(row.orders), node_id=row.node_id,
                    estimated_delivery_date=row.estimated_delivery_date,
                    parcel=Parcel(TrackingStatus(row.tracking_status), row.last_event_time))


def _scan(row: Any) -> Scan:
    return Scan(carrier=row.carrier, tracking_number=row.tracking_number,
                event_time=row.event_time, code=row.code, carrier_code=row.carrier_code,
                status=TrackingStatus(row.status), location=row.location,
                description=row.description, swept=row.swept)


def _unnest(name: str, **columns: tuple[Any, Sequence[Any]]) -> Any:
    """Parallel arrays as a table, one bound array per column: statements of a constant
    text whatever the number of rows, prepared once and cached (a VALUES list or an IN list
    of a thousand bound parameters costs more to build and plan than to run)."""
    arrays = [literal(list(values_), ARRAY(type_)) for type_, values_ in columns.values()]
    return func.unnest(*arrays).table_valued(*columns).render_derived(name=name)


async def lock_labels(session: AsyncSession,
                      keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], LabelRef]:
    """The labels of these (carrier, tracking number) pairs, locked in id order."""
    wanted = _unnest("wanted", carrier=(String, [k[0] for k in keys]),
                     tracking_number=(String, [k[1] for k in keys]))
    statement = (select(*_LABEL_COLUMNS)
                 .join(wanted, and_(labels.c.carrier == wanted.c.carrier,
                                    labels.c.tracking_number == wanted.c.tracking_number))
                 .order_by(labels.c.id).with_for_update(of=labels))
    rows = (await session.execute(statement)).all()
    return {(row.carrier, row.tracking_number): _label(row) for row in rows}


async def insert_events(session: AsyncSession, rows: Sequence[tuple[uuid.UUID, Scan]]
                        ) -> set[tuple[str, str, datetime, str]]:
    """Inserts the events not known yet; returns the keys of those inserted."""
    if not rows:
        return set()
    scans = [scan for _, scan in rows]
    new = _unnest(
        "new",
        label_id=(UUID(as_uuid=True), [label_id for label_id, _ in rows]),
        carrier=(String, [s.carrier for s in scans]),
        tracking_number=(String, [s.tracking_number for s in scans]),
        event_time=(DateTime(timezone=True), [s.event_time for s in scans]),
        code=(String, [s.code for s in scans]),
        carrier_code=(String, [s.carrier_code for s in scans]),
        status=(String, [s.status.value for s in scans]),
        location=(String, [s.location for s in scans]),
        description=(String, [s.description for s in scans]),
        swept=(Boolean, [s.swept for s in scans]),
    )
    names = ["label_id", "carrier", "tracking_number", "event_time", "code", "carrier_code",
             "status", "location", "description", "swept"]
    statement = (
        pg_insert(tracking_events)
        .from_select(names, select(*(new.c[n] for n in names)))
        .on_conflict_do_nothing(constraint="uq_tracking_events_carrier")
        .returning(tracking_events.c.carrier, tracking_events.c.tracking_number,
                   tracking_events.c.event_time, tracking_events.c.code)
    )
    return {tuple(row) for row in (await session.execute(statement)).all()}  # type: ignore[misc]


async def journeys(session: AsyncSession,
                   label_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Scan]]:
    """The stored events of these labels: the latest ``MAX_JOURNEY`` of each, which is every
    event of any real parcel, and bounds what a sender posting event after event for one
    parcel makes every later call read."""
    found: dict[uuid.UUID, list[Scan]] = {label_id: [] for label_id in label_ids}
    if not label_ids:
        return found
    rank = func.row_number().over(partition_by=tracking_events.c.label_id,
                                  order_by=tracking_events.c.event_time.desc()).label("rank")
    latest = (select(tracking_events, rank)
              .where(tracking_events.c.label_id == func.any(
                  literal(list(label_ids), ARRAY(UUID(as_uuid=True)))))
              .subquery())
    statement = (select(latest).where(latest.c.rank <= MAX_JOURNEY)
                 .order_by(latest.c.label_id, latest.c.event_time))
    for row in (await session.execute(statement)).all():
        found[row.label_id].append(_scan(row))
    return found


async def update_parcels(session: AsyncSession,
                         changes: Sequence[tuple[uuid.UUID, Progress]]) -> None:
    """Writes each parcel's status and last scan in one statement: a final status stays and
    the last scan only moves later."""
    if not changes:
        return
    new = _unnest("new", id=(UUID(as_uuid=True), [label_id for label_id, _ in changes]),
                  status=(String, [p.status.value for _, p in changes]),
                  last_event_time=(DateTime(timezone=True),
                                   [p.last_event_time for _, p in changes]))
    final = labels.c.tracking_status.in_([s.value for s in FINAL])
    await session.execute(
        update(labels)
        .where(labels.c.id == new.c.id)
        .values(
            tracking_status=case((final, labels.c.tracking_status), else_=new.c.status),
            last_event_time=func.greatest(labels.c.last_event_time, new.c.last_event_time),
            update_time=func.now(),
        )
    )


async def record(session: AsyncSession, scans: Sequence[Scan]) -> Recorded:
    """Stores ``scans`` (no two with one key) and moves their parcels; see the module's
    docstring."""
    result = Recorded()
    found = await lock_labels(session, list(dict.fromkeys(
        (s.carrier, s.tracking_number) for s in scans)))
    known = []
    for s in scans:
        label = found.get((s.carrier, s.tracking_number))
        if label is None:
            if s.tracking_number not in result.unknown:
                result.unknown.append(s.tracking_number)
        else:
            known.append((label, s))
    inserted = await insert_events(session, [(label.id, s) for label, s in known])
    result.recorded = len(inserted)
    result.duplicates = len(known) - len(inserted)
    new: dict[uuid.UUID, list[Scan]] = {}
    by_id: dict[uuid.UUID, LabelRef] = {}
    for label, s in known:
        if s.key in inserted:
            new.setdefault(label.id, []).append(s)
            by_id[label.id] = label
    stored = await journeys(session, list(new))
    changes = []
    for label_id, scans_of_label in new.items():
        fresh = {s.key for s in scans_of_label}
        before = [s for s in stored[label_id] if s.key not in fresh]
        progress = track(by_id[label_id].parcel, before, scans_of_label)
        result.progress.append((by_id[label_id], progress))
        if progress.changed:
            changes.append((label_id, progress))
    await update_parcels(session, changes)
    return result


async def stale_parcels(session: AsyncSession, before: datetime,
                        limit: int) -> list[LabelRef]:
    """Parcels on their way last scanned before ``before``, oldest first, locked; those
    another transaction holds (a call recording their events, another replica's sweep) are
    skipped: they are seen by the next pass, if still stale."""
    statement = (select(*_LABEL_COLUMNS)
                 .where(and_(labels.c.tracking_status.in_([s.value for s in ON_THE_WAY]),
                             labels.c.last_event_time < before))
                 .order_by(labels.c.last_event_time, labels.c.id).limit(limit)
                 .with_for_update(of=labels, skip_locked=True))
    return [_label(row) for row in (await session.execute(statement)).all()]


async def tracking(session: AsyncSession,
                   tracking_number: str) -> tuple[LabelRef, list[Scan]] | None:
    """A parcel's label (the newest, should two carriers share a number) and its latest
    events, oldest first."""
    statement = (select(*_LABEL_COLUMNS).where(labels.c.tracking_number == tracking_number)
                 .order_by(labels.c.create_time.desc(), labels.c.id.desc()).limit(1))
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    events = (select(tracking_events).where(tracking_events.c.label_id == row.id)
              .order_by(tracking_events.c.event_time.desc(), tracking_events.c.id.desc())
              .limit(MAX_HISTORY))
    scans = [_scan(r) for r in (await session.execute(events)).all()]
    return _label(row), scans[::-1]
