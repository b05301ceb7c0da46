"""Carriers and the services they sell, as data (service level, transit days, pickup days,
cut-offs, countries served), and the origins: where each fulfilment node ships from, its time
zone, cut-off and the carriers that collect there."""
