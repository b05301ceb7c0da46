"""Manifests: closing a carrier's day at a node, the manifest of its parcels."""
