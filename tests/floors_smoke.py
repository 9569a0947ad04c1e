"""The smoke test tests/test_packaging.py runs in a venv holding the lowest versions
pyproject.toml allows (uv's ``--resolution lowest-direct``): pytest is not there, so this
is a plain script. It imports every module of the gateway, builds the app with the demo's
settings, and asks one query of the simulator running in this process (a thread), with
the app's lifespan (start-up login, shutdown logout); then it serves the app as ``serve``
does (uvicorn with the connection guard, which reaches into uvicorn's protocol) and asks
the same over loopback HTTP, then over a WebSocket (graphql-transport-ws, with websockets'
client: uvicorn's WebSocket protocol is extended by the guard too), and subscribes to a room
over the WebSocket and over a multipart response (strawberry's subscription transports are
extended too). Exit 0 and "ok" when all of it works.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import sys
from typing import Any

import httpx
from starlette.testclient import TestClient
from websockets.asyncio.client import connect

import gateway
from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.serving import LoopbackServer
from gateway.simulator import run_simulator_in_thread

QUERY = '{ conference(number: "6401") { number name } }'
WATCH = (
    'subscription { conferenceSessions(numbers: ["6401"]) '
    "{ number reason session { participants { id } } } }"
)
INITIAL = {"conferenceSessions": {"number": "6401", "reason": "INITIAL", "session": None}}


async def served(app: Any) -> tuple[Any, Any, Any]:
    """The query and /healthz through uvicorn and the connection guard, over loopback; the
    query again over a WebSocket."""
    async with LoopbackServer(app) as server, httpx.AsyncClient(base_url=server.base_url) as c:
        answer = (await c.post("/graphql", json={"query": QUERY})).json()
        health = (await c.get("/healthz")).json()
        url = server.base_url.replace("http://", "ws://") + "/graphql"
        async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            await ws.recv()  # connection_ack
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": QUERY}}
            await ws.send(json.dumps(subscribe))
            over_ws = json.loads(await ws.recv()).get("payload")
            await ws.recv()  # complete
            subscribe = {"id": "2", "type": "subscribe", "payload": {"query": WATCH}}
            await ws.send(json.dumps(subscribe))
            watched = json.loads(await ws.recv())
        accept = {"accept": "text/event-stream, multipart/mixed"}  # urql's
        async with c.stream("POST", "/graphql", json={"query": WATCH}, headers=accept) as r:
            text = ""
            async for chunk in r.aiter_text():
                text += chunk
                if '"INITIAL"' in text:
                    break
    ws_ok = watched.get("payload") == {"data": INITIAL}
    multipart_ok = text.startswith("\r\n--graphql") and '"session":null' in text
    return answer, health, over_ws if ws_ok and multipart_ok else (watched, text)


def main() -> int:
    for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if module.name == "gateway.__main__":
            continue  # runs the command line
        if module.name.startswith("gateway.fleet") and "redis" not in sys.argv[1:]:
            continue  # the fleet needs the redis extra
        importlib.import_module(module.name)
    with run_simulator_in_thread() as simulator:
        app = create_app(demo_settings(simulator.base_url))
        with TestClient(app) as client:
            answer = client.post("/graphql", json={"query": QUERY}).json()
            health = client.get("/healthz").json()
        logins = simulator.state.stats.logins_succeeded
        over_http, served_health, over_ws = asyncio.run(
            served(create_app(demo_settings(simulator.base_url)))
        )
    expected = {"data": {"conference": {"number": "6401", "name": "PM"}}}
    if answer != expected or health.get("status") != "ok" or logins != 1:
        print(f"unexpected: {answer} {health} logins={logins}", file=sys.stderr)
        return 1
    if over_http != expected or over_ws != expected or served_health.get("status") != "ok":
        print(f"unexpected when served: {over_http} {over_ws} {served_health}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
