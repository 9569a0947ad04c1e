"""The chaos script in-process: a short run with a fixed seed keeps every invariant.

``scripts/chaos.py`` runs the real gateway against the simulator on loopback under random
faults. Here it runs for eight seconds with few clients and a generous hang margin (the
machine may be busy); assertions are on the report's counts, never on elapsed time.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from scripts.chaos import INVALID_INPUT_CODE, ChaosConfig, parse_args, run_chaos
from scripts.chaos import _invalid_bodies as invalid_bodies
from tests.gateway_stack import StackFactory

# This seed deals credentials, errno, stall and PBX down first, so even a short run
# changes the password (the fault most likely to lock the gateway out) at least once.
SEED = 20261131


async def test_chaos_run_keeps_every_invariant() -> None:
    """Eight seconds of faults under ten clients: every invariant holds, counts are sane."""
    config = ChaosConfig(
        duration=8,
        clients=10,
        seed=SEED,
        margin=5.0,
        fault_seconds=(0.5, 1.5),
        calm_seconds=(0.2, 0.6),
    )
    report = await run_chaos(config)
    assert dict(report.violations) == {}, report.as_text()
    assert report.requests > 0
    assert report.requests_by_kind["invalid"] > 0
    assert report.errors_by_code[INVALID_INPUT_CODE] >= report.requests_by_kind["invalid"]
    assert report.faults["credentials"] == 1
    assert sum(report.faults.values()) >= 3
    assert report.lockout_seen is False
    assert report.pbx_logins["locked"] == 0
    assert report.max_failed_logins_in_a_row <= 1
    assert report.pbx_logins["failed"] == report.gateway_logins["failed"]
    assert report.pbx_calls["conference/query"] > 0
    assert report.recovered_after is not None
    assert report.pbx_logouts == 1
    assert json.loads(json.dumps(report.as_json()))["ok"] is True


@pytest.mark.parametrize(
    "body",
    [pytest.param(body, id=json.dumps(body)[:60]) for body in invalid_bodies(True)],
)
async def test_chaos_invalid_inputs_are_bad_user_input(
    gateway_stack: StackFactory, body: dict[str, Any]
) -> None:
    """Each invalid input the chaos clients send is BAD_USER_INPUT and costs no PBX call."""
    stack = await gateway_stack()
    before = stack.calls()
    result = await stack.graphql(body["query"], body.get("variables"))
    assert [e["extensions"]["code"] for e in result["errors"]] == [INVALID_INPUT_CODE]
    assert stack.calls() == before


def test_chaos_cli_refuses_unknown_fault_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    """``--faults`` takes only the kinds the driver knows."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--faults", "stall,meteor"])
    assert exit_info.value.code == 2
    assert "meteor" in capsys.readouterr().err
