"""Capture: taking in new orders (CreateOrder, BatchCreateOrders), the rules a new order must
meet (every violation at once, the products' minimum order quantities), idempotent retries by
request id or channel order, and the products the service keeps from inventory's
ProductChanged events for that purpose."""
