"""Running the service locally: ``stack.py`` (demo, up, down) and ``livestack`` (helpers for bench/ and live tests)."""
