"""The smoke test tests/test_packaging.py runs in a venv holding the lowest versions
pyproject.toml allows (uv's ``--resolution lowest-direct``): pytest is not there, so this
is a plain script. It imports every module of the gateway, builds the app with the demo's
settings, and asks one query of the simulator running in this process (a thread), with
the app's lifespan (start-up login, shutdown logout). Exit 0 and "ok" when all of it works.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from starlette.testclient import TestClient

import gateway
from gateway.app import create_app
from gateway.demo import demo_settings
from gateway.simulator import run_simulator_in_thread

QUERY = '{ conference(number: "6401") { number name } }'


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
    expected = {"data": {"conference": {"number": "6401", "name": "PM"}}}
    if answer != expected or health.get("status") != "ok" or logins != 1:
        print(f"unexpected: {answer} {health} logins={logins}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
