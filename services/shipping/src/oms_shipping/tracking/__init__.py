"""Tracking: carrier scans recorded against the labels bought here, normalised per carrier to
one set of statuses, a parcel's status kept moving forward only, the events that tell orders
and customers (``ShipmentDelivered``, ``DeliveryException``, ``ShipmentProgressed``), and the
sweep that turns a parcel with no scan for too long into an exception."""
