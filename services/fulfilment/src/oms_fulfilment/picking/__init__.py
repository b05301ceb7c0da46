"""Picking: pick lists built from the node's open fulfilment orders by strategy (single
order, batch, zone, wave), their stops in walking order, pick confirmation per stop, and short
picks recorded on the orders' lines and published as ``PickShorted``."""
