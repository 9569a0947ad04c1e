"""Which source tells the sink about live changes: events, polling, or none.

``GATEWAY_LIVE_SOURCE``:

- ``auto`` (default): the TCP report channel (:mod:`gateway.live.event_source`) when the
  PBX's login answer says ``transport: TCP`` (or says nothing) and the channel can be
  opened; the push receiver (:mod:`gateway.live.push_receiver`) when it says ``HTTP`` and
  ``GATEWAY_LIVE_PUSH_PORT`` is set; otherwise (push without a port, no clear password for
  the TCP login, the report port unreachable, a refused report login) the poller
  (:mod:`gateway.live.poller`);
- ``events``: events only (TCP or push); never polls (a reconciliation that finds a missed
  change corrects the sink and logs, and the channel stays);
- ``poll``: the poller only; ``off``: nothing (``Conference.session`` still answers).

While on events, a slow *reconciliation* (:mod:`gateway.live.reconciliation`, every
``GATEWAY_LIVE_RECONCILE_INTERVAL`` seconds, 30 by default, only while somebody watches)
finds a change the PBX did not report: events switched off in its API settings (it logs in
fine and sends nothing), or no event when a room empties. In ``auto`` that is logged once
and the supervisor switches to polling for good.

A firmware without ``query_in_session`` (10003, the ``no-live`` variant) turns live
updates off with one log line: nothing can be resynced or polled there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from gateway.conference_codec import ALL
from gateway.errors import PbxError, PbxFeatureUnavailableError
from gateway.live.contracts import LiveSink
from gateway.live.event_source import Backoff, ChannelTarget, EventSource, Listing, Sleep
from gateway.live.poller import Poller
from gateway.live.push_receiver import PushEndpoint, PushSource, Serve
from gateway.live.reconciliation import RECONCILE_GRACE_SECONDS, Reconciler
from gateway.pbx.session import PbxSession
from gateway.pbx.sessions_query import LiveSession, MemberNotes, query_in_session
from gateway.settings import Settings

logger = logging.getLogger(__name__)

Kind = Literal["starting", "events", "push", "poll", "off"]
KINDS: tuple[Kind, ...] = ("starting", "events", "push", "poll", "off")
Source = EventSource | PushSource


@dataclass(frozen=True)
class LiveTiming:
    """The fixed timings (settings hold the documented ones; tests shorten these)."""

    backoff: Backoff = field(default_factory=Backoff)
    reconcile_grace: float = RECONCILE_GRACE_SECONDS
    login_timeout: float = 10.0
    max_line: int = 1 << 20
    sleep: Sleep = asyncio.sleep
    """How the poller and the reconciliation wait for their next tick."""


class LiveSupervisor:
    """Runs the chosen source into ``sink``; ``kind`` says which runs now."""

    def __init__(
        self,
        settings: Settings,
        session: PbxSession,
        *,
        timing: LiveTiming | None = None,
        notes: MemberNotes | None = None,
        push: PushEndpoint | None = None,
        serve: Serve | None = None,
    ) -> None:
        self._settings, self._session = settings, session
        self.push, self._serve = push, serve
        self._timing = timing or LiveTiming()
        self._notes = notes
        self.kind: Kind = "starting"
        self.events: Source | None = None
        """The events source while (or once) one ran: the TCP channel or the push receiver."""
        interval = settings.live_poll_interval
        self.poller = Poller(self._query_rooms, interval, sleep=self._timing.sleep)
        timing = self._timing
        self.reconciler = Reconciler(self._query_rooms, timing.reconcile_grace, timing.sleep)
        self.switched_to_polling = False

    async def _query_rooms(self, rooms: list[str]) -> Mapping[str, LiveSession]:
        return await query_in_session(self._session, rooms, notes=self._notes)

    async def _query_all(self) -> Listing:
        return await query_in_session(self._session, ALL, notes=self._notes)

    async def run(self, sink: LiveSink) -> None:
        """Run until cancelled (or until no source can work: then ``kind`` is ``off``)."""
        try:
            await self._run(sink)
        except PbxFeatureUnavailableError:
            logger.warning(
                "live: this PBX does not answer conference/query_in_session (errno 10003): "
                "live updates are off; `pbx-gateway doctor` lists what the device supports"
            )
        self.kind = "off"

    async def _run(self, sink: LiveSink) -> None:
        mode = self._settings.live_source
        if mode == "off":
            logger.info("live: GATEWAY_LIVE_SOURCE=off: subscribers get no live changes")
            return
        if mode in ("auto", "events"):
            source, why = await self._event_source(mode)
            if source is not None:
                why = await self._run_events(sink, mode, source)
            if mode == "events":
                logger.error(
                    "live: events cannot be received (%s) and GATEWAY_LIVE_SOURCE=events "
                    "forbids polling: subscribers get no live changes",
                    why,
                )
                return
            logger.warning("live: polling the watched rooms instead of events: %s", why)
        self.kind = "poll"
        await self.poller.run(sink)  # returns only when the PBX lacks the endpoint
        if self.poller.absent is not None:
            raise self.poller.absent

    async def _event_source(self, mode: str) -> tuple[Source | None, str]:
        """The source for the PBX's report method, or None and why there is none."""
        # The API login comes first (the warm-up login, or the first query's): only then are
        # the credentials known good. Waiting for it is a local check, never a PBX call.
        await self._session.started()
        while not self._session.has_token:
            await self._timing.sleep(self._timing.backoff.first)
        transport = self._session.report_transport
        if transport == "HTTP":
            if self.push is None or self._serve is None:
                return None, (
                    "the PBX sends events by HTTP push (its API settings' report method) and "
                    "GATEWAY_LIVE_PUSH_PORT is not set; set it, or the report method to TCP"
                )
            self.kind = "push"
            return PushSource(self.push, self._serve, self._query_all, notes=self._notes), ""
        if transport not in (None, "TCP"):
            return None, f"the PBX's report method {transport!r} is not one this gateway knows"
        settings = self._settings
        if settings.pbx_password.current_clear() is None:
            return None, (
                "the TCP report login needs the clear password (PBX_PASSWORD or "
                "PBX_PASSWORD_FILE); only its MD5 is configured"
            )
        self.kind = "events"
        return EventSource(
            self._session,
            ChannelTarget(
                host=urlsplit(settings.pbx_url).hostname or "localhost",
                port=settings.pbx_report_port,
                username=settings.pbx_username,
                secret=settings.pbx_password.current_clear,
            ),
            self._query_all,
            backoff=self._timing.backoff,
            login_timeout=self._timing.login_timeout,
            max_line=self._timing.max_line,
            give_up=mode == "auto",
            notes=self._notes,
        ), ""

    async def _run_events(self, sink: LiveSink, mode: str, source: Source) -> str:
        """The events source plus reconciliation; why it ended (to fall back to polling)."""
        self.events = source
        channel = asyncio.create_task(source.run(sink), name="live-events")
        checks = asyncio.create_task(self._reconcile_forever(source, sink, mode))
        try:
            done, _ = await asyncio.wait({channel, checks}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (channel, checks):
                task.cancel()
            await asyncio.gather(channel, checks, return_exceptions=True)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
        if checks in done:
            self.switched_to_polling = True
            return "the PBX did not report every change (reconciliation found a missed one)"
        if isinstance(source, PushSource):
            return f"cannot listen for pushed events on port {self._settings.live_push_port}"
        if source.counts.refusals:
            return "the PBX refused the report channel's login"
        settings = self._settings
        return (
            "the report channel could not be opened "
            f"({settings.pbx_url} report port {settings.pbx_report_port})"
        )

    async def _reconcile_forever(self, source: Source, sink: LiveSink, mode: str) -> None:
        """Returns when a missed change was found and ``mode`` allows polling instead."""
        logged = False
        while True:
            await self._timing.sleep(self._settings.live_reconcile_interval)
            try:
                missed = await self.reconciler.check(source, sink)
            except PbxFeatureUnavailableError:
                raise
            except PbxError as exc:
                logger.warning("live: reconciliation poll failed: %s", exc.message)
                continue
            if not missed:
                continue
            if mode == "auto":
                logger.warning(
                    "live: the PBX sent no event for a change in rooms %s (events off in its "
                    "API settings, or none when a room empties): switching to polling",
                    ", ".join(missed),
                )
                return
            if not logged:
                logged = True
                logger.warning(
                    "live: the PBX sent no event for a change in rooms %s; corrected by the "
                    "reconciliation poll (GATEWAY_LIVE_SOURCE=events: no switch to polling)",
                    ", ".join(missed),
                )


@dataclass
class LiveHandle:
    """The running supervisor: ``supervisor`` for counts, :meth:`aclose` to stop it."""

    supervisor: LiveSupervisor
    task: asyncio.Task[None]

    async def aclose(self) -> None:
        """Stop the source (closing the report channel)."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def start_live(
    settings: Settings,
    session: PbxSession,
    sink: LiveSink,
    *,
    timing: LiveTiming | None = None,
    notes: MemberNotes | None = None,
    push: PushEndpoint | None = None,
    serve: Serve | None = None,
) -> LiveHandle:
    """Start the supervisor in the running loop (the app's lifespan calls this); ``push``
    (the endpoint the session's logins announce) and ``serve`` (the app's HTTP server) let it
    take events by HTTP push."""
    supervisor = LiveSupervisor(
        settings, session, timing=timing, notes=notes, push=push, serve=serve
    )
    task = asyncio.create_task(supervisor.run(sink), name="live-supervisor")
    task.add_done_callback(_log_crash)
    return LiveHandle(supervisor, task)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("live: the source stopped on an error", exc_info=task.exception())
