"""Webhooks both ways: carriers' and payment providers' signed posts in (``inbound``), and
the domain events out to the endpoints partners subscribe (``endpoints``, ``handlers``,
``delivery``), all signed per Standard Webhooks (``signing``)."""
