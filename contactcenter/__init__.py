"""The bottom layer: primitives every app builds on (encrypted fields and keys,
blind indexes, teams and staff, API keys, errors, pagination, filters,
idempotency, retries, logging). It imports no app and not the wiring in config/;
tests/contactcenter/test_layering.py keeps it so."""
