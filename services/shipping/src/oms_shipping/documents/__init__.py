"""Printable documents: 4x6 labels as PDF and ZPL, manifests as PDF."""
