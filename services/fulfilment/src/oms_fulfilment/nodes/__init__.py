"""Nodes as fulfilment sees them: inventory owns them (type, cut-off, time zone, bins with
zone and walk sequence); fulfilment reads them through inventory's GetFulfilmentNode and keeps
each a short while."""
