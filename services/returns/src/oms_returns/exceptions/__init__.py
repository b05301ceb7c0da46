"""Delivery exceptions turned into action: a ``DeliveryException`` (shipping publishes one
for a problem on the way, a failed attempt, or a parcel going back to the sender) opens one
case per (order, package) whose outcome the rules decide — reship the same lines as a
replacement order, refund them, or wait (for the customer or the carrier) until a deadline
after which a fallback applies — and which acts exactly once.

The rules (:mod:`oms_returns.exceptions.domain`):

- **Kinds.** ``DeliveryException`` carries the carrier's description and no reason, so the
  description is read by keywords (the first match wins, the longer phrases first):
  returned to sender, refused, address problem, damaged, lost, customs, delivery failed,
  delayed (held, misrouted, no scan for days), else other. Shipping's own words when the
  carrier gave none ("Returned to sender", "Delivery attempt failed", "no scan for N days")
  fall in the right kind.
- **Plans**, configurable per kind, by default:
  - *lost* or *damaged*: reshipped at once when the order's lines in the package are worth
    at most the currency's reship limit (150 EUR/USD, 130 GBP; a currency without a limit
    always asks); above it the customer chooses reship or refund within 7 days, else it is
    refunded — a costly parcel is not sent down the same road twice unasked;
  - *refused by the customer*: refunded (only a refund may be chosen: they did not want it);
  - *returned to sender*, *address problem*, *customs*: the customer chooses (reship to a
    corrected address, pay the duties, or a refund) within 7 days, else refunded: the goods
    come back to us, so a refund loses nothing;
  - *delivery failed*: the carrier has 5 days to deliver (it tries again, or holds it for
    collection); once it has retried, the customer is asked as for a return to sender; a
    parcel neither delivered nor back by the deadline is treated as lost (by value);
  - *delayed* and *other*: the carrier has 5 days, then as lost (by value).
- **One case per (order, package)**, its id a UUIDv5 of the two (the store's unique key; a
  package of a merged shipment opens one case per order). A redelivered report, or an older
  one, changes nothing. While the case waits, a later report of another kind is decided
  afresh (a delay that turns into a loss), a second failed attempt counts as the carrier's
  retry, and the same problem reported again moves no deadline. A case that reshipped or
  refunded never acts again; the customer may answer (reship or refund) during either wait,
  up to its deadline; a delivery while it waits closes it with nothing done (a
  delivery after it acted changes nothing here: the parcel and the reship both went).
- **Exactly once.** The reship's replacement order has a request id derived from the case
  (and, through :func:`oms_returns.resolution.domain.replacement_order`, its own channel
  order number); the refund is named ``cases/{case}/refunds/{id}``, derived the same way, and
  paid with :func:`oms_returns.resolution.domain.refund`'s caps.
"""
