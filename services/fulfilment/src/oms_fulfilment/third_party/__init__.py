"""The hand-off to 3PLs and dropship suppliers: the request they are sent, and the progress
they report back until the order has shipped or closed short."""
