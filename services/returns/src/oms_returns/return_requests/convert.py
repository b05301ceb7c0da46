"""Returns between their protos, the rules' values and the stored rows: the only place a
return's proto and its events are built."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.timestamp_pb2 import Timestamp
from oms.common.v1 import common_pb2
from oms.orders.v1 import orders_pb2
from oms.returns.v1 import events_pb2, returns_pb2
from oms_platform.errors import Violations
from oms_platform.money import Money
from oms_platform.values import timestamp

from oms_returns.policies.convert import money_message
from oms_returns.policies.domain import Condition, Payer, Reason
from oms_returns.return_requests import domain
from oms_returns.return_requests.store import Return

PREFIX = "returns/"
PAYERS = {Payer.MERCHANT.value: returns_pb2.SHIPPING_PAYER_MERCHANT,
          Payer.CUSTOMER.value: returns_pb2.SHIPPING_PAYER_CUSTOMER}


def name_of(return_id: uuid.UUID) -> str:
    return f"{PREFIX}{return_id}"


def parse_name(name: str) -> uuid.UUID:
    try:
        if not name.startswith(PREFIX):
            raise ValueError(name)
        return uuid.UUID(name.removeprefix(PREFIX))
    except ValueError:
        violations = Violations()
        violations.add("name", '"returns/{return}" with the return\'s id')
        violations.raise_if_any()
        raise


def request_of(message: returns_pb2.CreateReturnRequest) -> domain.ReturnRequest:
    return domain.ReturnRequest(
        request_id=message.request_id, order=message.order,
        lines=tuple(domain.LineRequest(line.line_id, line.quantity, line.reason, line.note)
                    for line in message.lines[:domain.MAX_LINES + 1]),
        note=message.note, outcome=message.outcome)


def _time(stamp: Timestamp) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if stamp.seconds or stamp.nanos else None


def order_facts(order: orders_pb2.Order) -> domain.OrderFacts:
    delivered = domain.delivered_units(
        [(line.line_id, line.quantity) for line in order.lines],
        [(_time(s.deliver_time), [(line.line_id, line.quantity) for line in s.lines])
         for s in order.shipments])
    currency = order.total.currency_code or (
        order.lines[0].unit_price.currency_code if order.lines else "")
    return domain.OrderFacts(
        name=order.name, channel=order.channel, currency_code=currency,
        lines={line.line_id: domain.OrderedLine(
            line.line_id, line.sku, line.quantity,
            Money.of(line.unit_price.currency_code, line.unit_price.amount or "0"),
            *delivered[line.line_id]) for line in order.lines},
        weight_grams=order.weight.grams, item_count=order.item_count)


def address_json(address: common_pb2.Address) -> dict[str, object]:
    return MessageToDict(address)


def address_of(stored: dict[str, object]) -> common_pb2.Address:
    return ParseDict(stored or {}, common_pb2.Address(), ignore_unknown_fields=True)


def _money(amount: Decimal | None, currency: str) -> common_pb2.Money | None:
    return None if amount is None else money_message(Money.of(currency, amount))


def return_message(found: Return) -> returns_pb2.Return:
    row = found.row
    currency = row.currency_code
    message = returns_pb2.Return(
        name=name_of(row.id), order=row.order_name, channel=row.channel,
        state=returns_pb2.ReturnState.Value(f"RETURN_STATE_{row.state}"),
        note=row.note, outcome=returns_pb2.ReturnOutcome.Value(f"RETURN_OUTCOME_{row.outcome}"),
        review_reasons=row.review_reasons, shipping_payer=PAYERS[row.shipping_payer],
        return_shipping_fee=_money(row.return_shipping_fee, currency),
        reject_reason=row.reject_reason, create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        label=returns_pb2.ReturnLabel(label=row.label_name, carrier=row.carrier,
                                      tracking_number=row.tracking_number,
                                      tracking_url=row.tracking_url, error=row.label_error),
        lines=[returns_pb2.ReturnLine(
            line_id=line.line_id, sku=line.sku, quantity=line.quantity,
            reason=Reason[line.reason].value,  # type: ignore[arg-type]
            note=line.note, policy=f"returnPolicies/{line.policy_id}" if line.policy_id else "",
            unit_price=_money(line.unit_price, currency),
            restocking_fee=_money(line.restocking_fee, currency), keep_it=line.keep_it,
            conditions=[Condition[c].value for c in line.conditions],  # type: ignore[misc]
            deliver_time=timestamp(line.deliver_time)) for line in found.lines])
    if row.approve_time is not None:
        message.approve_time.CopyFrom(timestamp(row.approve_time))
    return message


def return_values(return_id: uuid.UUID, request: domain.ReturnRequest,
                  order: orders_pb2.Order, facts: domain.OrderFacts,
                  assessment: domain.Assessment, weight_grams: int, now: datetime
                  ) -> dict[str, object]:
    fee = assessment.shipping.fee
    return {
        "id": return_id, "request_id": request.request_id, "order_name": facts.name,
        "channel": facts.channel,
        "state": (domain.State.APPROVED if assessment.approved else domain.State.REQUESTED
                  ).value,
        "note": request.note, "outcome": assessment.outcome.name,
        "review_reasons": list(assessment.review_reasons),
        "currency_code": facts.currency_code, "shipping_payer": assessment.shipping.payer.value,
        "return_shipping_fee": fee.amount if fee is not None else None,
        "return_from": address_json(order.shipping_address), "weight_grams": weight_grams,
        "create_time": now, "update_time": now,
        "approve_time": now if assessment.approved else None,
    }


def line_values(return_id: uuid.UUID, assessment: domain.Assessment) -> list[dict[str, object]]:
    return [{
        "return_id": return_id, "line_id": line.request.line_id, "position": position,
        "sku": line.sku, "quantity": line.request.quantity,
        "reason": Reason(line.request.reason).name, "note": line.request.note,
        "policy_id": line.policy_id, "unit_price": line.unit_price.amount,
        "restocking_fee": line.terms.restocking_fee.amount, "keep_it": line.terms.keep_it,
        "conditions": [c.name for c in line.terms.conditions],
        "deliver_time": line.deliver_time,
    } for position, line in enumerate(assessment.lines)]


def _lines(found: Return) -> list[events_pb2.RequestedLine]:
    return [events_pb2.RequestedLine(line_id=line.line_id, sku=line.sku,
                                     quantity=line.quantity,
                                     reason=Reason[line.reason].value,  # type: ignore[arg-type]
                                     keep_it=line.keep_it) for line in found.lines]


def return_requested(found: Return) -> events_pb2.ReturnRequested:
    row = found.row
    event = events_pb2.ReturnRequested(
        order=row.order_name, channel=row.channel, lines=_lines(found),
        awaiting_review=row.state == domain.State.REQUESTED.value,
        review_reasons=row.review_reasons, request_time=timestamp(row.create_time))
    setattr(event, "return", name_of(row.id))
    return event


def return_approved(found: Return, *, by_person: bool) -> events_pb2.ReturnApproved:
    row = found.row
    event = events_pb2.ReturnApproved(order=row.order_name, lines=_lines(found),
                                      by_person=by_person,
                                      approve_time=timestamp(row.approve_time))
    setattr(event, "return", name_of(row.id))
    return event


def return_rejected(found: Return) -> events_pb2.ReturnRejected:
    row = found.row
    event = events_pb2.ReturnRejected(order=row.order_name, reason=row.reject_reason,
                                      reject_time=timestamp(row.update_time))
    setattr(event, "return", name_of(row.id))
    return event


