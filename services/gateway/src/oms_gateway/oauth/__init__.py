"""OAuth 2.0 client credentials (RFC 6749 §4.4): a partner trades its id and API key for a
short-lived signed access token (RFC 9068-style JWT) limited to the scopes it asks for."""
