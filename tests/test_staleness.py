"""The stale report: what one request served from the last known data, as extensions.stale."""

from __future__ import annotations

from gateway.errors import PbxTimeoutError
from gateway.staleness import REVALIDATING, REVALIDATING_MESSAGE, StaleReport

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TIMEOUT = PbxTimeoutError("the PBX did not answer conference/query", endpoint="conference/query")


def test_staleness_empty_report_is_false() -> None:
    """A request that served nothing stale has a false report (no extensions.stale)."""
    report = StaleReport()
    assert not report
    report.add("6400", 12.0, None)
    assert report


def test_staleness_failure_names_code_message_and_each_age() -> None:
    """With a failure, the code and message are the failure's; each room has its age and
    fetch time, the oldest age is at the top, and a listing served stale is reported too."""
    report = StaleReport()
    report.add("6400", 312.4, TIMEOUT)
    report.add("6401", 30.25, None)
    report.add_listing(100.0, TIMEOUT)
    assert report.as_json(now=NOW) == {
        "code": "PBX_UNAVAILABLE",
        "message": "the PBX did not answer conference/query",
        "oldestAgeSeconds": 312.4,
        "conferences": [
            {"number": "6400", "ageSeconds": 312.4, "fetchedAt": "2025-12-31T23:54:47Z"},
            {
                "number": "6401",
                "ageSeconds": 30.25,
                "fetchedAt": "2025-12-31T23:59:29Z",
                "revalidating": True,
            },
        ],
        "allConferences": {"ageSeconds": 100.0, "fetchedAt": "2025-12-31T23:58:20Z"},
    }


def test_staleness_only_expired_answers_are_revalidating() -> None:
    """Answers past their TTL with nothing failed: the code is REVALIDATING, no error."""
    report = StaleReport()
    report.add("6400", 31.0, None)
    stale = report.as_json(now=NOW)
    assert (stale["code"], stale["message"]) == (REVALIDATING, REVALIDATING_MESSAGE)
    assert "allConferences" not in stale


def test_staleness_first_note_of_a_room_is_kept() -> None:
    """A room noted twice in one request keeps its first age and reason."""
    report = StaleReport()
    report.add("6400", 50.0, TIMEOUT)
    report.add("6400", 5.0, None)
    assert report.as_json(now=NOW)["conferences"] == [
        {"number": "6400", "ageSeconds": 50.0, "fetchedAt": "2025-12-31T23:59:10Z"}
    ]
