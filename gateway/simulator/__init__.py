"""A faithful Yeastar S-Series PBX (HTTP API v2.0.0) simulator, including its bad days.

Modules, one concept each:

- ``config``: ``SimulatorConfig``, the demo credentials and the URL prefixes.
- ``envelope``: the PBX's answer envelope, headers and errno numbers.
- ``conference_rules``: wire field names and value rules; ``conference_data``: default,
  generated and file-loaded rooms; ``conference_book``: the rooms by number.
- ``tokens``, ``lockout``: token lifetime and the failed-login lockout.
- ``faults``: counted faults (fail, garbage, drop, stall); ``misbehave``: their answers.
- ``stats``: the counters; ``state``: ``SimulatorState``, everything live plus the admin API.
- ``api`` and ``endpoints``: the API calls; ``admin``: the ``/__simulator`` routes;
  ``routing``: any-method routes; ``app``: ``create_simulator_app``.
- ``server``: ``SimulatorServer`` over loopback; ``threaded``: the same on a background thread.
- ``profiles``: named firmware variants (``PROFILES``), each a set of config changes.
- Live conferences: ``live_session`` (rooms in session and their rules), ``live_endpoints``
  (``query_in_session`` and the member controls), ``report_hub`` (ConferenceStatus events),
  ``report_tcp`` (the TCP report port), ``report_push`` (HTTP push), ``busy_office`` (the
  seeded demo script), ``admin_live`` (``/__simulator/live`` routes), ``admin_args``.
- ``command``: the ``pbx-gateway simulator`` subcommand.
"""

from gateway.simulator.app import create_simulator_app
from gateway.simulator.conference_data import (
    ConferenceDataError,
    default_conferences,
    generate_conferences,
    load_conferences,
)
from gateway.simulator.config import (
    DEMO_PASSWORD,
    DEMO_USERNAME,
    SimulatorConfig,
    password_digest,
)
from gateway.simulator.profiles import PROFILES, FirmwareProfile, profile_config
from gateway.simulator.server import SimulatorServer
from gateway.simulator.state import SimulatorState
from gateway.simulator.threaded import run_simulator_in_thread

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USERNAME",
    "PROFILES",
    "ConferenceDataError",
    "FirmwareProfile",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorState",
    "create_simulator_app",
    "default_conferences",
    "generate_conferences",
    "load_conferences",
    "password_digest",
    "profile_config",
    "run_simulator_in_thread",
]
