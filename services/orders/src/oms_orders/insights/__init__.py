"""Insights: the order KPIs (OrderInsightsService.GetOrderKpis, and ExportOrderKpis as CSV),
per period for the channels asked for together and one by one, and the read model of events
behind them — what each order was placed with and promised, cancelled and why, packed,
shipped from which node, delivered, returned and refunded — which the notifications read for
an order's contact and delivery state."""
