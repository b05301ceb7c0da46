"""The shipping service: carriers, services and rate cards, rating and rate shopping with a
delivery promise, labels and tracking numbers, manifests, and tracking to the door."""
