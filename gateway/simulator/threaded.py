"""``run_simulator_in_thread``: a ``SimulatorServer`` for synchronous code and the demo.

The server gets its own event loop on a background thread; ``SimulatorServer.go_down`` and
``come_up`` hop onto that loop, and ``SimulatorState``'s admin methods are safe to call from the
caller's thread (they only set plain attributes the loop reads, and the ``live_*`` changes run
on the server's loop and wait for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from gateway.simulator.config import SimulatorConfig
from gateway.simulator.server import SimulatorServer


@contextlib.contextmanager
def run_simulator_in_thread(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[SimulatorServer]:
    """A ``SimulatorServer`` running on its own loop in a background thread, for sync code."""
    server = SimulatorServer(config, host, port)
    started = threading.Event()
    failure: list[BaseException] = []
    stop_requested: list[asyncio.Event] = []
    loop_ready: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        stop = asyncio.Event()
        stop_requested.append(stop)
        loop_ready.append(asyncio.get_running_loop())
        try:
            await server.start()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        await stop.wait()
        await server.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="pbx-simulator")
    thread.start()
    started.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield server
    finally:
        loop_ready[0].call_soon_threadsafe(stop_requested[0].set)
        thread.join()
