"""Who is in each room, cached briefly and shared by every request (``Conference.session``).

Why its own small module rather than a second :class:`~gateway.store.ConferenceStore`: the
store's machinery (per-number entries, proofs of absence, stale copies, ``forget`` epochs)
answers questions live data does not have, and its shape would not fit cleanly. What this
module keeps instead:

- **one listing of every room in session**, asked with ``number: "all"`` and kept for
  ``ttl`` seconds (``GATEWAY_SESSION_TTL``, a couple of seconds: people come and go). Every
  room is answered from it: one in the listing is in session, one left out is not. So a
  request costs at most one ``conference/query_in_session`` whatever it selects (five
  aliased rooms and every room's ``session`` alike), and a room nobody is in needs no
  proof of its own (a comma list holding an idle room fails whole on some firmware: 10110);
- **single-flight**: requests that miss while a fetch is under way wait for it; the fetch
  runs as its own task, so a request giving up (its deadline) does not cancel it for the
  others. It goes through the gateway's one PBX session, hence the client's cap
  (``PBX_MAX_CONCURRENCY``), breaker and retry rules, like every room fetch;
- **never stale**: an answer older than the TTL is not served; when the PBX cannot answer,
  each ``session`` asked gets the error (who *was* in a room minutes ago is not who is in it).
  Errors are not kept: the next request asks again (single-flight still holds);
- **kept coherent with live data**: when the live feed learns a room's state (a
  ``ConferenceStatus`` event, a poll, a resync), :meth:`SessionCache.apply` patches the
  listing held (one room) and :meth:`SessionCache.apply_listing` takes a complete answer, so a
  ``Conference.session`` read sees the change at once rather than after the TTL. A fetch
  under way meanwhile may have been answered before the news: the news is laid over what it
  keeps, never undone by it.

The participant ids the schema shows are :meth:`SessionCache.participant_id`: an HMAC of the
room number and the PBX's channel id under a key made for this process, so the id is stable
while the member stays in the room, reveals nothing of the channel, and means nothing to
another process (replicas give different ids).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from gateway.errors import PbxTimeoutError
from gateway.pbx.sessions_query import ENDPOINT, LiveMember, LiveSession

Listing = Mapping[str, LiveSession]
FetchAll = Callable[[], Awaitable[Listing]]
Admit = Callable[[int], None]
ID_HEX_DIGITS = 20


@dataclass
class SessionCacheStats:
    """Counters tests and metrics read."""

    hits: int = 0
    fetches: int = 0
    failed_fetches: int = 0


class SessionCache:
    """The listing of rooms in session: TTL, single-flight, never stale."""

    def __init__(
        self,
        fetch_all: FetchAll,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        id_key: bytes | None = None,
    ) -> None:
        self._fetch_all = fetch_all
        self._ttl = ttl
        self._clock = clock
        self._id_key = id_key if id_key is not None else secrets.token_bytes(32)
        self._listing: dict[str, LiveSession] | None = None
        self._fetched_at = 0.0
        self._inflight: asyncio.Task[Listing] | None = None
        self._epoch = 0  # bumped by forget(): a fetch begun before it keeps nothing
        # Live news told while a fetch is under way: the fetch's answer may predate it, so
        # the news is applied again on top of what the fetch keeps (news is never undone).
        self._news: dict[str, LiveSession | None] = {}
        self._superseded = False  # a whole listing was told meanwhile: the fetch keeps nothing
        self.stats = SessionCacheStats()

    async def get_many(
        self,
        numbers: Sequence[str],
        *,
        deadline: float | None = None,
        admit: Admit | None = None,
    ) -> list[LiveSession | BaseException | None]:
        """Each room's session (None: nobody is in it), or the error that kept it unknown,
        in the order asked (what a DataLoader's batch function returns)."""
        try:
            listing = await self._listing_for(deadline, admit)
        except Exception as exc:  # every room asked gets it, at its own path
            return [exc for _ in numbers]
        return [listing.get(number) for number in numbers]

    async def _listing_for(self, deadline: float | None, admit: Admit | None) -> Listing:
        if self._listing is not None and self._clock() - self._fetched_at < self._ttl:
            self.stats.hits += 1
            return self._listing
        task = self._inflight
        if task is None:
            if admit is not None:
                admit(1)  # charged only to the request that starts the call
            task = asyncio.create_task(self._fetch())
            # Its error goes to every waiter; retrieved here too, for when none is left.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._inflight = task
        remaining = None if deadline is None else max(0.0, deadline - self._clock())
        try:
            return await asyncio.wait_for(asyncio.shield(task), remaining)
        except TimeoutError:
            raise PbxTimeoutError(
                "the PBX did not say who is in the room before the request's deadline; "
                "try again shortly",
                endpoint=ENDPOINT,
            ) from None

    def forget(self) -> None:
        """Drop what is known (a moderator just changed a room): the next read asks the PBX,
        and a fetch already under way answers its waiters but keeps nothing."""
        self._epoch += 1
        self._listing = None
        self._inflight = None

    def apply(self, number: str, session: LiveSession | None) -> None:
        """Room ``number`` as a live source just reported it (None: nobody is in it):
        patched into the listing held, if any (none held: the next read asks the PBX).
        The listing's age is left alone: one room's news says nothing of the others."""
        if self._inflight is not None:
            self._news[number] = session
        if self._listing is None:
            return
        if session is None:
            self._listing.pop(number, None)
        else:
            self._listing[number] = session

    def apply_listing(self, listing: Listing, rooms: Collection[str] | None = None) -> None:
        """A complete answer from a live source (a poll, a resync): every room of ``rooms``
        not in ``listing`` has nobody in it. With ``rooms`` None it is the whole PBX's answer,
        as good as a fetch of our own: kept as the fresh listing."""
        if rooms is None:
            self._listing = dict(listing)
            self._fetched_at = self._clock()
            self._superseded = self._inflight is not None
            self._news.clear()
            return
        for number in rooms:
            self.apply(number, listing.get(number))

    async def _fetch(self) -> Listing:
        self.stats.fetches += 1
        epoch = self._epoch
        self._news, self._superseded = {}, False
        try:
            listing = await self._fetch_all()
        except Exception:
            self.stats.failed_fetches += 1
            raise
        finally:
            if self._epoch == epoch:
                self._inflight = None
        if self._epoch != epoch:
            return listing
        if self._superseded and self._listing is not None:
            return self._listing  # a source's whole listing came meanwhile: newer
        kept = dict(listing)  # our own copy: apply() patches it
        for number, session in self._news.items():
            if session is None:
                kept.pop(number, None)
            else:
                kept[number] = session
        self._listing, self._fetched_at, self._news = kept, self._clock(), {}
        return kept

    def participant_id(self, room: str, member: LiveMember) -> str:
        """A stable opaque id for ``member`` of ``room`` (HMAC of the room and channel id;
        without a channel id, of what the PBX says about the member)."""
        if member.channelid is not None:
            subject = f"{room}\0channel\0{member.channelid}"
        else:
            parts = (member.kind, member.number, member.from_number, member.to_number)
            subject = f"{room}\0member\0" + "\0".join(part or "" for part in parts)
        digest = hmac.new(self._id_key, subject.encode(), hashlib.sha256).hexdigest()
        return digest[:ID_HEX_DIGITS]

    async def aclose(self) -> None:
        """Cancel a fetch still under way (the app is stopping)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
