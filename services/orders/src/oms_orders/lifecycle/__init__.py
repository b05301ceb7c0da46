"""Lifecycle: the Order aggregate and its state machine, from capture to return. Payments,
holds, updates, cancellations, merges and splits (the back office's commands), releases to the
warehouse, the events of inventory, fulfilment, shipping and returns that move an order, and
the sweep that cancels orders unpaid in time. Its domain holds the value types the other
capabilities share, and its store the loading and saving of orders."""
