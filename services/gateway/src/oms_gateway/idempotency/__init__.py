"""Idempotent POSTs as Stripe does them: every POST carries an ``Idempotency-Key``, scoped to
the partner; the first answer is stored and replayed byte for byte; the same key with a
different request is refused (422), and one still in flight is a conflict (409)."""
