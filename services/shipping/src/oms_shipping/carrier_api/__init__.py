"""Real carriers through karrio: our rate, label, void and tracking requests as karrio's unified
calls (UPS, DHL Express, Royal Mail), and karrio's answers back as our own values, with money
as ``Decimal``. ``domain.py`` is the pure mapping and the errors a carrier call can end in;
``client.py`` makes the blocking karrio calls off the event loop, with the credentials from
configuration and a timeout. Table-rate carriers never come here."""
