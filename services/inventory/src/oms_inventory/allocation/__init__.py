"""Allocation: which node ships each line of an order (the planner and its strategies),
reservations and the backorder queue, the `OrderCreated` handlers that allocate orders in
batches, and the reservation lifecycle (expiry, payment, cancellation, shipment, return)."""
