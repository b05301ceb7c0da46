"""Search: the back office's ListOrders and CountOrders — the fields a filter may name, the SQL
each condition becomes over the indexed columns of ``orders``, the pages and their tokens, and
the counts per status with what the back office's tiles sum up."""
