"""Resolution: what a return gives back, each exactly once — a refund, store credit, or an
exchange (optionally shipped in advance, and charged if the item never comes back).

The rules (:mod:`oms_returns.resolution.domain`):

- **Money** is ``oms_platform.money.Money``: a currency and a ``Decimal`` quantized to the
  currency's minor units, the same as orders and the wire's ``oms.common.v1.Money`` (a
  decimal string); the refund arithmetic runs on whole minor units, so nothing rounds twice.
- **Paid price.** A returned unit is worth the order line's ``unit_price``. The orders
  contract carries no order-level discount (``Order.total`` is the sum of the lines), so
  there is no share of a discount to take off; when one appears, it belongs in
  ``RefundLine.unit_price``.
- **Refund** = per line, the paid price of its refundable units (from inspection), capped
  first at what is left of the line's capture (captured minus refunded, across every refund of
  the order) and then at what is left of the order's captures (refunds recorded on the order
  by other means count there; the last lines give way first); less the restocking fee in
  basis points of the line's paid price (rounded down: the customer never pays a fraction
  more than the rate); less the fixed restocking fee and the return shipping the customer
  pays (once per refund, taken from the first line on). The caps come before the fees: a
  capture that was already partly paid back leaves less to refund, and the fees still apply
  to what is left. A refund is never below zero: deductions beyond it are *waived* (reported,
  never carried to a later refund). Every cent a cap withholds is a ``Refusal`` naming the
  line and the cap. So the lines' refunded amounts never exceed their captures, nor their
  sum the order's, whatever the sequence of refunds — the property the tests check.
- **Captured per line.** Orders records captures per order; :func:`allocate` shares one out
  over the lines in proportion to their value, to the minor unit (largest remainder).
- **Keys.** A refund is named ``{return}/refunds/{id}`` with the id a UUIDv5 of the return and
  its resolution: a replay derives the same name, which the store keeps unique and orders
  records as the payment's transaction id (unique per order). Exchanges, advance charges and
  store credit derive their ids the same way, each under its own kind.
- **Store credit** is a ledger of entries per customer and currency: issued by a return's
  resolution (once), spent by a later order (once per order), never below zero
  (``InsufficientCredit``: a failed precondition). A currency is its own balance; credit is
  never converted.
- **Exchange**: a replacement order through the orders service, same channel, lines of the
  same SKU or of one of its variants (the catalogue says which), at the paid price of the
  units they replace, so that no money moves; its ``request_id`` is derived, and so is its
  channel order number (the original's with an ``-R`` suffix), so orders refuses a second.
- **Advance exchange**: the replacement ships first; if nothing came back within N days of
  its shipping (the deadline instant is still in time) it is charged at the replacement's
  price. The clock stops when the returned parcel is first scanned by the carrier, or
  received: the customer has done their part. A return that comes back late but before the
  charge is taken is simply received, and nothing is charged; one that comes back after the
  charge is refunded like any return.

Not here: partial refunds of a line's fee by a person, reversing a store-credit spend when
the order that spent it is cancelled, price differences between a SKU and its variant.
"""
