"""Developer scripts; a package only so that tests can import them (never installed)."""
