"""Stock: the levels per node and SKU and the append-only ledger of every movement (receipts,
adjustments, counts, safety stock, the drift check that compares the two), channel buffers
and available-to-sell, and replenishment (reorder points, sales velocity, suggestions), with
the `StockLevelChanged` and `ReorderPointReached` events every movement ends with."""
