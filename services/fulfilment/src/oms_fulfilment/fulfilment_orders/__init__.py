"""Fulfilment orders: what one node ships of one release (one per order and node, however
often the release arrives), its priority and promised ship time, its lines with their bins,
and what a cancellation does to them (units not yet picked are dropped, picked ones are put
back in their bins)."""
