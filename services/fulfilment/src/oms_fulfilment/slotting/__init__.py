"""Slotting: which bin of a node each SKU is stored in. Fulfilment owns it; the bins
themselves (code, zone, walk sequence) are inventory's."""
