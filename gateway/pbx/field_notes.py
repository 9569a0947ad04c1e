"""What the PBX did not report readably, logged once per room and field per cache TTL.

The tolerant reader (:mod:`gateway.pbx.conferences`) answers a setting the firmware leaves
out as null instead of failing; an operator still wants to know, but not once per request
or per fetch: a K2 leaves ``mute`` out of every room, every time. So each (room, field) is
logged once, then not again for ``ttl`` seconds (the cache TTL: about once per refresh).
A left-out setting is INFO (older firmware does that); an unreadable value, or a room that
cannot be read at all, is a WARNING. Values are never logged: a field may be a PIN.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Final

from cachetools import TTLCache

from gateway.pbx.conferences import FieldNote, UnreadableRoom

logger = logging.getLogger(__name__)

LISTED: Final = 20
"""Rooms named per log record; more are counted."""


class FieldNotes:
    """Logs field notes and unreadable rooms, each (room, field) once per ``ttl``."""

    def __init__(
        self,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        self._seen: TTLCache[tuple[str, str], bool] = TTLCache(
            max_entries, max(ttl, 1.0), timer=clock
        )

    def _first(self, key: tuple[str, str]) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = True
        return True

    def log(self, endpoint: str, notes: Iterable[FieldNote]) -> None:
        """One record per field and kind (absent / unreadable), naming the rooms new to it."""
        groups: dict[tuple[str, bool], list[str]] = defaultdict(list)
        for note in notes:
            if self._first((note.number, note.wire_name)):
                groups[(note.wire_name, note.absent)].append(note.number)
        for (wire_name, absent), numbers in groups.items():
            shown = ", ".join(numbers[:LISTED])
            more = f" and {len(numbers) - LISTED} more" if len(numbers) > LISTED else ""
            logger.log(
                logging.INFO if absent else logging.WARNING,
                "%s: %r %s in room(s) %s%s; answered as null (reported again after the cache TTL)",
                endpoint,
                wire_name,
                "is absent" if absent else "is unreadable",
                shown,
                more,
            )

    def unreadable(self, room: UnreadableRoom) -> None:
        """A room that cannot be read at all: one WARNING per room (and reason) per TTL."""
        if self._first((room.number or "", room.reason)):
            logger.warning("%s (the other rooms are answered)", room.reason)
