"""Cartonisation: which of a node's standard boxes a picked order is packed in, with what
packaging material, in how many parcels, and what each weighs."""
