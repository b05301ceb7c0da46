"""Receipt and inspection: what arrived at the node reconciled with what the RMA announced,
each unit graded, the disposition that follows the grade, and the lines of ``ReturnReceived``
(which units are restocked, which are refunded).

The rules (:mod:`oms_returns.inspection.domain`):

- **Grades.** An inspector grades the units that came out of the parcel as ``RESELLABLE``,
  ``REFURBISH``, ``DAMAGED`` (with a cause: the carrier, a defect, the customer, or not
  known) or ``WRONG_ITEM`` (the barcode may be right, the thing inside is not). ``MISSING`` is
  never graded by hand: it is what the RMA announced and nobody found.
- **Dispositions**, configurable per grade (and per damage cause), by default: resellable →
  restock; refurbish → refurbish; damaged by the carrier → scrap (and a claim on the
  carrier); damaged by a defect → return to vendor; damaged by the customer, or by a cause
  nobody recorded → hold; wrong item → hold. ``HOLD`` is a fifth disposition beside the four
  of the issue: a unit a person must decide about is neither stocked nor thrown away.
- **Refundable.** Resellable and refurbish units are refunded, and so are units damaged by
  the carrier or by a defect (not the customer's doing); held units are not, until a person
  decides. A damaged unit whose cause was not recorded takes it from the return's reason:
  returned as *damaged* means damaged on the way to the customer (the carrier), as
  *defective* means a defect; any other reason leaves it unknown (held).
- **Reconciliation**, never silent. Units are matched to the RMA's lines by SKU, in the RMA's
  line order (two lines of one SKU are filled first to last); a line returned as the *wrong
  item* also accepts the SKU the customer says they got instead (``received_sku``). Units of
  a line beyond what it announced are ``EXTRA`` (held, not refunded: the best grades fill the
  announcement first, so the customer is paid for the best units they sent); units of a SKU
  no line announced are ``WRONG_SKU`` (held); announced units nobody found are ``SHORT``
  (graded ``MISSING``, not refunded); units graded ``WRONG_ITEM`` are ``WRONG_ITEM``
  discrepancies and leave their line short. Any discrepancy puts the receipt up for review.
- **Restock.** ``ReturnReceived`` names the order line's SKU (orders checks it) and inventory
  puts that SKU back on hand, once per (return, line). So a line gives at most two
  ``ReturnedLine``: one ``restock`` line for its restocked units, one for the others it
  counts as received; a unit scanned under another SKU (the item sent in error, returned as
  the wrong item) is counted as received but never restocked under the line's SKU — a person
  books it in under its own. Extra units, wrong SKUs and wrong items are not on the event.
"""
