"""The product replica: inventory's product master as far as fulfilment needs it (title,
GTIN, weight, dimensions, fragility), kept from ``ProductChanged``."""
