"""Typed reading of environment variables that fails with the variable's name.

Every settings module reads through :class:`EnvReader`, so every mistake reads the same:
one line, naming the variable, saying what was expected, and never echoing a secret.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from gateway.errors import ConfigError

TRUE: Final = frozenset({"1", "true", "yes", "on"})
FALSE: Final = frozenset({"0", "false", "no", "off"})


class EnvReader:
    """Typed accessors over an environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        """The stripped value, or None when unset or blank."""
        value = self._environ.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def required(self, name: str, hint: str = "") -> str:
        value = self.get(name)
        if value is None:
            raise ConfigError(f"{name} is required but not set{hint}")
        return value

    def url(self, name: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
        value = self.required(name).rstrip("/")
        parts = urlsplit(value)
        # Checked first, and the value never echoed then: it would print the credentials.
        if "@" in parts.netloc:
            raise ConfigError(f"{name} must hold no credentials (user:password@); remove them")
        if parts.scheme not in schemes or not parts.hostname:
            raise ConfigError(
                f"{name} must be an http(s) URL such as https://192.168.5.150:8088, got {value!r}"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"{name} must hold no query or fragment")
        return value

    def number(self, name: str, default: float, *, minimum: float) -> float:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(f"{name} must be a finite number of at least {minimum}, got {raw!r}")
        return value

    def optional_number(self, name: str, *, minimum: float) -> float | None:
        """A number of seconds, or None when unset."""
        return None if self.get(name) is None else self.number(name, 0.0, minimum=minimum)

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.get(name)
        if raw is None:
            return default
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
        raw = self.get(name)
        if raw is None:
            if default is None:
                raise ConfigError(f"{name} is required: one of {', '.join(choices)}")
            return default
        if raw.lower() not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return raw.lower()

    def words(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A comma- or space-separated list."""
        raw = self.get(name)
        if raw is None:
            return default
        return tuple(word for word in raw.replace(",", " ").split() if word)

    def file(self, name: str) -> Path | None:
        """A path that must name a readable file, or None when unset."""
        raw = self.get(name)
        if raw is None:
            return None
        path = Path(raw)
        if not path.is_file():
            raise ConfigError(f"{name}: {raw!r} is not a readable file")
        return path


def required_file(reader: EnvReader, name: str) -> Path:
    """A path that must be set and name a readable file."""
    path = reader.file(name)
    if path is None:
        raise ConfigError(f"{name} is required but not set")
    return path


def read_secret_file(name: str, path: Path) -> str:
    """A secret file's text without the trailing newline editors add; never echoed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot read {path} ({type(exc).__name__})") from None
    text = text.rstrip("\r\n")
    if text == "":
        raise ConfigError(f"{name}: {path} is empty")
    return text
