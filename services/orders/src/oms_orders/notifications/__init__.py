"""Notifications: the customer's emails (confirmation, dispatch, delivery, survey), enqueued
once each from events, rendered from the templates beside this package, sent over SMTP by a
background task on every replica, and listed by OrderInsightsService.ListOrderNotifications."""
