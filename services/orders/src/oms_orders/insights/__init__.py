"""Insights: the order KPIs (OrderInsightsService.GetOrderKpis) and the read model of events
behind them — what each order was placed with, cancelled, shipped, delivered and returned —
which the notifications read for an order's contact and delivery state."""
