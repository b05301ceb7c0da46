"""The returns service: the after-sale — return policies, return requests (RMAs) with their
labels, receipt and inspection, refunds, store credit and exchanges, and delivery exceptions
turned into action."""
