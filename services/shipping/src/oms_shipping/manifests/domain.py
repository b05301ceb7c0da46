"""The rules of manifests, pure: what a close request must hold, which day it closes, the
bounds of a manifest."""

from __future__ import annotations

import re
from datetime import date, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from oms_platform import filtering as filters
from oms_platform.errors import FailedPrecondition, Violations

from oms_shipping.carriers.domain import Origin

MANIFEST_NAME = re.compile(r"manifests/(?P<id>[0-9a-f-]{36})")
# A manifest lists at most this many labels; a busier day is closed in several manifests
# (each close takes the oldest open labels up to the bound and the next close takes the rest).
MAX_LABELS = 10_000
MAX_REQUEST_ID_LENGTH = 128
MAX_PAGE_SIZE = 500
MANIFEST_FILTER_FIELDS = {
    "carrier": filters.text("=", "!="),
    "node_id": filters.text("=", "!="),
}


class NothingToClose(FailedPrecondition):
    reason = "NOTHING_TO_CLOSE"


def check_close(violations: Violations, request_id: str, carrier: str, node_id: str) -> None:
    violations.require(0 < len(request_id) <= MAX_REQUEST_ID_LENGTH, "request_id",
                       f"required, at most {MAX_REQUEST_ID_LENGTH} characters")
    violations.require(0 < len(carrier) <= 63, "carrier", "required, a carrier id")
    violations.require(0 < len(node_id) <= 63, "node_id", "required, a node id")


def closing_day(origin: Origin, now: datetime) -> date:
    """The day a close closes: the origin's local date now."""
    return now.astimezone(ZoneInfo(origin.time_zone)).date()


def check_not_empty_again(taken: int, already_closed: bool, carrier: str, node_id: str,
                          day: date) -> None:
    """A day may close with no parcels once (the carrier still came); closing it again with
    nothing open would only add empty manifests."""
    if taken == 0 and already_closed:
        raise NothingToClose(f"{carrier} at {node_id} is closed for {day.isoformat()} and no "
                             "label is open", metadata={"carrier": carrier, "node_id": node_id})


def parse_manifest_name(violations: Violations, path: str, name: str) -> UUID | None:
    match = MANIFEST_NAME.fullmatch(name)
    try:
        return UUID(match["id"]) if match else _bad(violations, path)
    except ValueError:
        return _bad(violations, path)


def _bad(violations: Violations, path: str) -> None:
    violations.add(path, 'must be "manifests/{manifest_id}"')


def require_manifest_name(name: str, path: str = "name") -> UUID:
    violations = Violations()
    manifest_id = parse_manifest_name(violations, path, name)
    violations.raise_if_any()
    assert manifest_id is not None
    return manifest_id


def manifest_name(manifest_id: UUID) -> str:
    return f"manifests/{manifest_id}"
