"""Return policies as data and the decisions they make for a returned line."""
