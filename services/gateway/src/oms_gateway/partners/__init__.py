"""Partners (sales channels, 3PLs, carriers, payment providers), their API keys and scopes,
and what each may see: the gateway lets a partner in as itself and no further."""
