"""Labels: tracking numbers with check digits, purchase idempotent by request_id, bulk, void."""
