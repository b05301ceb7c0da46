"""Tracking rules without a server: carrier codes normalised per carrier, the journey that only
goes forward whatever order events arrive in, duplicates, exceptions once, the no-scan rule."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oms_platform.errors import InvalidArgument, Violations
from oms_shipping.tracking.domain import (
    MAX_EVENTS,
    NO_SCAN_CODE,
    EventDraft,
    Parcel,
    Scan,
    TrackingStatus,
    advance,
    carrier_family,
    check_events,
    no_scan,
    normalise,
    replay,
    scan_of,
    stale_before,
    track,
)

S = TrackingStatus
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def scan(status: S, hours: float, code: str = "", description: str = "",
         carrier: str = "ups", tracking_number: str = "1Z999") -> Scan:
    return Scan(carrier=carrier, tracking_number=tracking_number,
                event_time=T0 + timedelta(hours=hours), code=code or f"{status}-{hours}",
                carrier_code=code, status=status, description=description)


def draft(**overrides: object) -> EventDraft:
    values: dict[str, object] = dict(carrier="ups", tracking_number="1Z999", carrier_code="I",
                                     status=S.UNSPECIFIED, event_time=T0, location="",
                                     description="")
    values.update(overrides)
    return EventDraft(**values)  # type: ignore[arg-type]


# --- normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(("carrier", "code", "expected"), [
    # UPS activity status types and codes
    ("ups", "M", S.PRE_TRANSIT), ("ups", "P", S.IN_TRANSIT), ("ups", "I", S.IN_TRANSIT),
    ("ups", "O", S.OUT_FOR_DELIVERY), ("ups", "X", S.EXCEPTION), ("ups", "D", S.DELIVERED),
    ("ups", "RS", S.RETURNED_TO_SENDER), ("ups", "UU", S.DELIVERY_FAILED),
    # Royal Mail and Parcelforce (one tracking platform)
    ("royal_mail", "EVAIP", S.PRE_TRANSIT), ("royal_mail", "EVDAV", S.IN_TRANSIT),
    ("royal_mail", "EVGPD", S.OUT_FOR_DELIVERY), ("royal_mail", "EVKNA", S.DELIVERY_FAILED),
    ("royal_mail", "EVNCU", S.EXCEPTION), ("royal_mail", "EVKSP", S.DELIVERED),
    ("parcelforce", "EVKOP", S.DELIVERED),
    # DHL Express checkpoints
    ("dhl_express", "PU", S.IN_TRANSIT), ("dhl_express", "WC", S.OUT_FOR_DELIVERY),
    ("dhl_express", "NH", S.DELIVERY_FAILED), ("dhl_express", "CD", S.EXCEPTION),
    ("dhl_express", "RT", S.RETURNED_TO_SENDER), ("dhl_express", "OK", S.DELIVERED),
    # USPS event codes
    ("usps", "GX", S.PRE_TRANSIT), ("usps", "03", S.IN_TRANSIT),
    ("usps", "OF", S.OUT_FOR_DELIVERY), ("usps", "02", S.DELIVERY_FAILED),
    ("usps", "09", S.RETURNED_TO_SENDER), ("usps", "01", S.DELIVERED),
    # FedEx: OF is "at origin facility" there, not out for delivery
    ("fedex", "OC", S.PRE_TRANSIT), ("fedex", "OF", S.IN_TRANSIT),
    ("fedex", "OD", S.OUT_FOR_DELIVERY), ("fedex", "DE", S.DELIVERY_FAILED),
    ("fedex", "SE", S.EXCEPTION), ("fedex", "DL", S.DELIVERED),
    # DPD, Evri
    ("dpd", "OnTheRoad", S.IN_TRANSIT), ("dpd", "Courier", S.OUT_FOR_DELIVERY),
    ("dpd", "Delivered", S.DELIVERED), ("evri", "3000", S.OUT_FOR_DELIVERY),
    ("evri", "3500", S.DELIVERED), ("evri", "4000", S.DELIVERY_FAILED),
])
def test_carrier_codes_are_normalised_per_carrier(carrier: str, code: str,
                                                  expected: S) -> None:
    assert normalise(carrier, code, "") is expected


def test_one_code_means_what_its_carrier_means() -> None:
    # "OF": FedEx's origin facility, USPS's out for delivery, UPS's out for final delivery.
    assert normalise("fedex", "OF", "") is S.IN_TRANSIT
    assert normalise("usps", "OF", "") is S.OUT_FOR_DELIVERY
    # "D" is delivered at UPS and nothing at DHL Express (read from the description there).
    assert normalise("ups", "D", "") is S.DELIVERED
    assert normalise("dhl_express", "D", "Shipment on hold") is S.EXCEPTION


@pytest.mark.parametrize(("carrier", "family"), [
    ("ups", "ups"), ("UPS", "ups"), ("ups_us", "ups"), ("royalmail", "royal_mail"),
    ("Royal-Mail", "royal_mail"), ("dhl", "dhl_express"), ("hermes", "evri"),
    ("dpd_uk", "dpd"), ("acme_freight", "acme_freight"),
])
def test_carrier_ids_find_their_family(carrier: str, family: str) -> None:
    assert carrier_family(carrier) == family


def test_a_given_status_wins_then_the_code_then_karrio_names_then_keywords() -> None:
    assert normalise("ups", "D", "in transit", S.EXCEPTION) is S.EXCEPTION
    assert normalise("ups", "D", "departed facility") is S.DELIVERED
    assert normalise("acme", "out_for_delivery", "") is S.OUT_FOR_DELIVERY
    assert normalise("ups", "delivery_delayed", "") is S.EXCEPTION
    assert normalise("acme", "ZZ", "Arrived at hub") is S.IN_TRANSIT
    assert normalise("acme", "ZZ", "Something happened") is S.UNSPECIFIED


@pytest.mark.parametrize(("description", "expected"), [
    ("Your parcel has been delivered", S.DELIVERED),
    ("Delivered to neighbour at no. 12", S.DELIVERED),
    ("Not delivered - nobody home", S.DELIVERY_FAILED),
    ("Sorry we missed you, card left", S.DELIVERY_FAILED),
    ("Due to be delivered today", S.OUT_FOR_DELIVERY),
    ("Your parcel will be delivered tomorrow", S.IN_TRANSIT),
    ("Out for delivery", S.OUT_FOR_DELIVERY),
    ("Returned to sender: addressee unknown", S.RETURNED_TO_SENDER),
    ("Held at customs", S.EXCEPTION),
    ("Shipping label created, awaiting item", S.PRE_TRANSIT),
    ("At Yodel's Hatfield hub", S.IN_TRANSIT),
])
def test_descriptions_are_read_by_keywords(description: str, expected: S) -> None:
    assert normalise("yodel", "", description) is expected


# --- the journey ---------------------------------------------------------------------------


@pytest.mark.parametrize(("current", "incoming", "after"), [
    (S.PRE_TRANSIT, S.IN_TRANSIT, S.IN_TRANSIT),
    (S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.OUT_FOR_DELIVERY),
    (S.OUT_FOR_DELIVERY, S.IN_TRANSIT, S.OUT_FOR_DELIVERY),  # no step back
    (S.IN_TRANSIT, S.PRE_TRANSIT, S.IN_TRANSIT),
    (S.OUT_FOR_DELIVERY, S.DELIVERY_FAILED, S.DELIVERY_FAILED),
    (S.DELIVERY_FAILED, S.IN_TRANSIT, S.IN_TRANSIT),  # the journey goes on
    (S.EXCEPTION, S.OUT_FOR_DELIVERY, S.OUT_FOR_DELIVERY),
    (S.EXCEPTION, S.PRE_TRANSIT, S.EXCEPTION),
    (S.DELIVERY_FAILED, S.EXCEPTION, S.EXCEPTION),
    (S.EXCEPTION, S.DELIVERY_FAILED, S.DELIVERY_FAILED),
    (S.IN_TRANSIT, S.UNSPECIFIED, S.IN_TRANSIT),
    (S.DELIVERED, S.EXCEPTION, S.DELIVERED),  # final
    (S.DELIVERED, S.RETURNED_TO_SENDER, S.DELIVERED),
    (S.RETURNED_TO_SENDER, S.DELIVERED, S.RETURNED_TO_SENDER),  # delivered to the sender
    (S.RETURNED_TO_SENDER, S.IN_TRANSIT, S.RETURNED_TO_SENDER),
    (S.OUT_FOR_DELIVERY, S.DELIVERED, S.DELIVERED),
])
def test_advance(current: S, incoming: S, after: S) -> None:
    assert advance(current, incoming) is after


def test_an_older_event_takes_its_place_and_never_counts_as_the_latest() -> None:
    out = scan(S.OUT_FOR_DELIVERY, 2)
    late_transit = scan(S.IN_TRANSIT, 1)
    assert replay([out, late_transit]).status is S.OUT_FOR_DELIVERY
    assert replay([out, late_transit]).by == out


def test_a_late_failed_attempt_fills_in_the_step_that_lets_the_journey_go_on() -> None:
    out, back_at_depot = scan(S.OUT_FOR_DELIVERY, 2), scan(S.IN_TRANSIT, 10)
    assert replay([out, back_at_depot]).status is S.OUT_FOR_DELIVERY
    assert replay([out, back_at_depot, scan(S.DELIVERY_FAILED, 3)]).status is S.IN_TRANSIT


def test_events_of_one_instant_settle_forward() -> None:
    both = [scan(S.DELIVERED, 5), scan(S.OUT_FOR_DELIVERY, 5)]
    assert replay(both).status is S.DELIVERED
    assert replay(both[::-1]).status is S.DELIVERED


def test_delivered_is_final_even_against_a_late_earlier_return() -> None:
    delivered = track(Parcel(S.OUT_FOR_DELIVERY, T0), [], [scan(S.DELIVERED, 5)])
    assert delivered.status is S.DELIVERED and delivered.delivered is not None
    after = track(Parcel(S.DELIVERED, delivered.last_event_time), [scan(S.DELIVERED, 5)],
                  [scan(S.RETURNED_TO_SENDER, 1, code="RS"), scan(S.IN_TRANSIT, 9)])
    assert after.status is S.DELIVERED
    assert after.delivered is None
    assert after.last_event_time == T0 + timedelta(hours=9)


def test_delivery_reported_once() -> None:
    first = track(Parcel(S.IN_TRANSIT, T0), [scan(S.IN_TRANSIT, 0)], [scan(S.DELIVERED, 4)])
    assert first.delivered == scan(S.DELIVERED, 4)
    again = track(Parcel(S.DELIVERED, first.last_event_time),
                  [scan(S.IN_TRANSIT, 0), scan(S.DELIVERED, 4)], [scan(S.DELIVERED, 6)])
    assert again.delivered is None and again.status is S.DELIVERED


def test_progress_is_reported_when_the_parcel_moves_on_its_way() -> None:
    moved = track(Parcel(S.PRE_TRANSIT, None), [], [scan(S.IN_TRANSIT, 1), scan(S.IN_TRANSIT, 2)])
    assert moved.progressed == scan(S.IN_TRANSIT, 1)
    same = track(Parcel(S.IN_TRANSIT, moved.last_event_time),
                 [scan(S.IN_TRANSIT, 1), scan(S.IN_TRANSIT, 2)], [scan(S.IN_TRANSIT, 3)])
    assert same.progressed is None and same.changed  # a newer scan, the same stage
    back_on_way = track(Parcel(S.DELIVERY_FAILED, T0), [scan(S.DELIVERY_FAILED, 0)],
                        [scan(S.OUT_FOR_DELIVERY, 24)])
    assert back_on_way.progressed == scan(S.OUT_FOR_DELIVERY, 24)


def test_each_exception_is_reported_once() -> None:
    customs = scan(S.EXCEPTION, 1, code="CD", description="Held at  customs")
    customs_again = scan(S.EXCEPTION, 25, code="CD", description="held at customs")
    attempt = scan(S.DELIVERY_FAILED, 30, code="NH", description="Not home")
    first = track(Parcel(S.IN_TRANSIT, T0), [], [customs, customs_again])
    assert first.exceptions == [customs]
    second = track(Parcel(first.status, first.last_event_time), [customs, customs_again],
                   [replace(customs_again, event_time=T0 + timedelta(hours=26), code="CU",
                            carrier_code="CU", description="Duties unpaid"),
                    attempt])
    assert [e.status for e in second.exceptions] == [S.EXCEPTION, S.DELIVERY_FAILED]


# Journeys the way carriers tell them: every prefix of a plausible route, with any setbacks.
STEPS = [S.PRE_TRANSIT, S.IN_TRANSIT, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERY_FAILED,
         S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.EXCEPTION, S.IN_TRANSIT, S.OUT_FOR_DELIVERY]


@st.composite
def journeys(draw: st.DrawFn) -> tuple[list[Scan], list[list[Scan]]]:
    length = draw(st.integers(1, len(STEPS)))
    statuses = STEPS[:length]
    if draw(st.booleans()):
        statuses = [*statuses, draw(st.sampled_from([S.DELIVERED, S.RETURNED_TO_SENDER]))]
    # A few stray scans after the end: a return picked up, a glitch.
    statuses += draw(st.lists(st.sampled_from([S.IN_TRANSIT, S.UNSPECIFIED]), max_size=2))
    events = [scan(status, hour, code=f"C{hour}") for hour, status in enumerate(statuses)]
    shuffled = draw(st.permutations(events + draw(st.lists(st.sampled_from(events),
                                                           max_size=5))))
    cuts = sorted(draw(st.lists(st.integers(0, len(shuffled)), max_size=4)))
    calls = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    return events, calls


@settings(max_examples=300, deadline=None)
@given(journeys())
def test_any_arrival_order_with_duplicates_ends_where_the_journey_ends(
        case: tuple[list[Scan], list[list[Scan]]]) -> None:
    events, calls = case
    parcel, stored = Parcel(S.PRE_TRANSIT, None), []
    deliveries, problems = 0, []
    for call in calls:
        new = list({s.key: s for s in call if s not in stored}.values())
        progress = track(parcel, stored, new)
        if parcel.status is S.DELIVERED:
            assert progress.status is S.DELIVERED
        deliveries += progress.delivered is not None
        problems += [e.problem for e in progress.exceptions]
        stored += new
        parcel = Parcel(progress.status, progress.last_event_time)
    in_order = list(events)
    assert parcel.status is replay(in_order).status
    assert parcel.last_event_time == max(e.event_time for e in events)
    assert deliveries == (replay(in_order).status is S.DELIVERED)
    expected_problems = {e.problem for e in events if e.status in
                         (S.EXCEPTION, S.DELIVERY_FAILED, S.RETURNED_TO_SENDER)}
    assert sorted(problems) == sorted(expected_problems)


def test_the_journey_in_order() -> None:
    events = [scan(status, hour) for hour, status in enumerate([*STEPS, S.DELIVERED])]
    statuses = [replay(events[:n + 1]).status for n in range(len(events))]
    assert statuses == [*STEPS, S.DELIVERED]
    random.Random(7).shuffle(events)
    assert replay(events).status is S.DELIVERED


# --- requests ------------------------------------------------------------------------------


def test_every_violation_at_once() -> None:
    violations = Violations()
    check_events(violations, [
        draft(carrier="", tracking_number=" "),
        draft(event_time=None, status=None, carrier_code="X" * 65),
        draft(event_time=T0 + timedelta(days=2), description="d" * 501),
    ], now=T0)
    with pytest.raises(InvalidArgument) as error:
        violations.raise_if_any()
    assert {v.field for v in error.value.violations} == {
        "events[0].carrier", "events[0].tracking_number", "events[1].event_time",
        "events[1].status", "events[1].carrier_code", "events[2].event_time",
        "events[2].description"}


def test_a_request_has_one_to_five_hundred_events() -> None:
    for count in (0, MAX_EVENTS + 1):
        violations = Violations()
        check_events(violations, [draft(carrier_code=str(i)) for i in range(count)], now=T0)
        assert [v.field for v in violations.items] == ["events"]
    violations = Violations()
    assert len(check_events(violations, [draft(carrier_code=str(i)) for i in range(MAX_EVENTS)],
                            now=T0)) == MAX_EVENTS
    assert not violations.items


def test_duplicates_in_a_request_are_one_event() -> None:
    violations = Violations()
    scans = check_events(violations, [
        draft(carrier_code="I", description="first"),
        draft(carrier_code="I", description="copy"),
        draft(carrier_code="D"),
        draft(carrier_code="", status=S.DELIVERED),
        draft(carrier_code="", status=S.DELIVERED, description="again"),
        draft(carrier_code="", status=S.OUT_FOR_DELIVERY),
    ], now=T0)
    assert [(s.code, s.status, s.description) for s in scans] == [
        ("I", S.IN_TRANSIT, "first"), ("D", S.DELIVERED, ""),
        ("DELIVERED", S.DELIVERED, ""), ("OUT_FOR_DELIVERY", S.OUT_FOR_DELIVERY, "")]


def test_a_scan_keeps_what_the_carrier_said() -> None:
    recorded = scan_of(draft(carrier_code=" EVKSP ", carrier="royal_mail",
                             location=" Swindon ", description="Delivered and signed "))
    assert (recorded.code, recorded.carrier_code, recorded.status, recorded.location,
            recorded.description) == ("EVKSP", "EVKSP", S.DELIVERED, "Swindon",
                                      "Delivered and signed")


# --- no scan -------------------------------------------------------------------------------


def test_no_scan_for_n_days_is_one_exception_dated_n_days_after_the_last_scan() -> None:
    now = T0 + timedelta(days=6)
    assert stale_before(now, 5) == T0 + timedelta(days=1)
    exception = no_scan("ups", "1Z999", T0, 5)
    assert exception == no_scan("ups", "1Z999", T0, 5)  # one key, whichever sweep makes it
    assert (exception.event_time, exception.code, exception.status, exception.description) == (
        T0 + timedelta(days=5), NO_SCAN_CODE, S.EXCEPTION, "no scan for 5 days")
    last = scan(S.IN_TRANSIT, 0)
    swept = track(Parcel(S.IN_TRANSIT, T0), [last], [exception])
    assert swept.status is S.EXCEPTION and swept.exceptions == [exception]
    assert swept.last_event_time == T0  # the sweep is no scan
    resumed = track(Parcel(S.EXCEPTION, T0), [last, exception],
                    [scan(S.IN_TRANSIT, 24 * 7)])
    assert resumed.status is S.IN_TRANSIT
    assert resumed.last_event_time == T0 + timedelta(days=7)
