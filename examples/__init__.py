"""Examples of calling the gateway from your code; a package only so that tests and mypy can
import them (never installed)."""
