"""What a run prints: a header, one row per measured window, the summary, and ``--compare``.

Rows are printed as each window ends, so a long run shows progress; every number printed
is also in the results file (``runner`` builds it; this module only formats).
"""

from __future__ import annotations

import sys
from typing import Any

from bench.workloads import Workload

_ROW = (
    "  {target:<8} {stack:<17} {rps:>9} {p50:>8} {p99:>8} {errors:>7} {pbx:>10} {one:>5} "
    "{rss:>9} {cpu:>6} {cpu_req:>8} {other:>5}  {client}"
)


def say(text: str) -> None:
    """Print and flush (the run is long; show progress)."""
    print(text, flush=True)
    sys.stdout.flush()


def megabytes(size: float | None) -> str:
    """``71.2 MB``."""
    return "-" if size is None else f"{size / 1e6:.1f} MB"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def header(environment: dict[str, Any], options: Any) -> str:
    """Who, what, where."""
    git = environment["git"]
    dirty = ", uncommitted changes" if git.get("dirty") else ""
    load = environment.get("loadavg_start")
    peers = environment.get("peers") or {}
    peer_line = (
        f"peers: Apollo Server {peers['packages'].get('@apollo/server', '?')} and GraphQL Yoga "
        f"{peers['packages'].get('graphql-yoga', '?')} on Node {peers.get('node') or '?'}, "
        "response caches on, DataLoader per request"
        if peers.get("node")
        else f"peers: not run ({peers.get('missing') or 'not installed'})"
    )
    return "\n".join(
        [
            f"pbx-gateway benchmark: git {git.get('commit') or '?'}{dirty}; "
            f"Python {environment['python']}; {environment['cpus']} CPUs "
            f"({environment.get('cpu_model', '?')})"
            + (f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else ""),
            f"targets: uvicorn on {environment['loop']}+{environment['http']}, one process "
            "each, 127.0.0.1; load: "
            f"{environment['loadgen']} ({environment['loadgen_version'] or 'built in'})",
            f"{environment.get('gateway_settings', '')}",
            peer_line,
            f"simulated PBX: serial (one call at a time), {options.latency * 1000:.0f} ms "
            f"+ up to {options.jitter * 1000:.0f} ms jitter per call",
            "columns: PBX/1k req = PBX calls per 1,000 client requests in the window; 1 req = "
            "PBX calls of one request alone (after warm-up); peak RSS = VmHWM of the server "
            "process(es); srv CPU = server CPU / wall time; other = cores busy with anything "
            "but this run (noise); client = load generator CPU per thread/process",
        ]
    )


def workload_header(workload: Workload, loadgen: str, *, rounds: int | None = None) -> str:
    """The title of a workload, its settings and the column names."""
    columns = _ROW.format(
        target="target", stack="stack", rps="req/s", p50="p50 ms", p99="p99 ms",
        errors="errors", pbx="PBX/1k req", one="1 req", rss="peak RSS", cpu="srv CPU",
        cpu_req="CPU ms/r", other="other", client="client (CPU)",
    )  # fmt: skip
    timing = (
        f"{workload.duration:g} s per target in {rounds} alternating rounds, all targets but "
        "naive running at once"
        if rounds
        else f"{workload.duration:g} s"
    )
    settings = f"\n   gateway settings: {settings_words(workload.settings_label)}"
    bodies = (
        f"bodies drawn per request, {len(workload.bodies)} to check and warm"
        if workload.random
        else f"{len(workload.bodies)} distinct bodies"
    )
    return (
        f"\n== {workload.label}: {workload.title} ({workload.rooms:,} rooms, "
        f"{workload.connections} connections, {timing}, {bodies}){settings}\n{columns}"
    )


def cold_header(count: int) -> str:
    """The cold burst's title and columns."""
    return (
        f"\n== cold: {count} concurrent requests for {count} different cold rooms, sent at "
        "once (pre-opened connections, raw sockets; sent = ms to write them all) to each "
        "target freshly started; the gateway as shipped (batch size 100), then with its "
        "PBX-fetch budget lifted\n"
        f"  {'target':<8} {'settings':<24} {'PBX calls':>9} {'query':>6} {'errors':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'sent':>6}"
    )


def cold_row(row: dict[str, Any]) -> str:
    """One target's burst."""
    latency = row["latency_ms"]
    return (
        f"  {row['target']:<8} {row['settings'] or row['stack']:<24} {row['pbx_calls']:>9} "
        f"{row['query_calls']:>6} "
        f"{row['errors']:>7} {_num(latency['p50'], 1):>8} {_num(latency['p99'], 1):>8} "
        f"{_num(latency['max'], 1):>8} {_num(row.get('send_spread_ms'), 1):>6}"
        + (f"  {row['error_codes']}" if row.get("error_codes") else "")
    )


_FANOUT = (
    "  {label:<16} {subs:>6} {rooms:>5} {events:>7} {rate:>6} {p50:>8} {p99:>8} {first:>8} "
    "{admin:>6} {cap:>7} {deliv:>8} {us:>7} {rss:>15} {per:>7} {pbx:>6} {slow:>4} {missed:>6} "
    "{cpu:>4} {load:>4} {other:>5}"
)


def fanout_header(options: Any) -> str:
    """The fan-out workload's title, what its figures measure, and the column names."""
    columns = _FANOUT.format(
        label="row", subs="subs", rooms="rooms", events="changes", rate="ev/s",
        p50="last p50", p99="last p99", first="1st p50", admin="admin", cap="cap ev/s",
        deliv="deliv/s", us="CPU us", rss="gw RSS MB", per="KB/sub", pbx="PBX/ev",
        slow="slow", missed="missed", cpu="gw", load="load", other="other",
    )  # fmt: skip
    return (
        "\n== fanout: N graphql-transport-ws subscribers on one gateway process (served as "
        "pbx-gateway serve serves it; one socket each, over a few rooms and loopback "
        "addresses), changes made on the simulated PBX\n"
        "   gateway settings: shipped defaults unless the row says (events: the PBX's TCP "
        "report channel; poll: events off, the gateway's poller)\n"
        f"   paced phase ({options.fanout_rate:g} changes/s asked; ev/s = sustained): latency "
        "(ms) from the simulator's stamp of the change (its event just written to the report "
        "channel; one monotonic clock on the machine) to the moment the LAST (last p50/p99) "
        "or first (1st p50) subscriber of the room read the CHANGED update, in the load "
        "process; admin = the admin call's round trip p50\n"
        "   burst phase (changes back to back): cap ev/s = changes delivered to every "
        "subscriber per second, deliv/s = updates delivered per second, CPU us = gateway CPU "
        "per update delivered\n"
        "   gw RSS = before -> with the subscribers; KB/sub = that growth / N (allocator "
        "included); PBX/ev = query_in_session calls per change; slow = SLOW_CONSUMER closes; "
        "missed = updates never received (both phases); gw/load = CPU % of the gateway and "
        "the load process (paced phase); other = cores busy outside the run\n"
        f"{columns}"
    )


def fanout_row(row: dict[str, Any]) -> str:
    """One fan-out row."""
    rss, cpu, burst = row["rss"], row["cpu"], row.get("burst") or {}
    missed = row["deliveries_missed"] + burst.get("deliveries_missed", 0)
    per = rss.get("per_subscriber_bytes")
    return (
        _FANOUT.format(
            label=row["label"],
            subs=f"{row['subscribers']:,}",
            rooms=row["rooms"],
            events=f"{row['events_complete']}/{row['events']}",
            rate=_num(row["events_per_s"], 1),
            p50=_num(row["latency_to_last_ms"]["p50"], 1),
            p99=_num(row["latency_to_last_ms"]["p99"], 1),
            first=_num(row["latency_to_first_ms"]["p50"], 1),
            admin=_num(row["admin_call_ms"]["p50"], 1),
            cap=_num(burst.get("events_per_s"), 1),
            deliv=_num(burst.get("deliveries_per_s"), 0),
            us=_num((burst.get("cpu") or {}).get("gateway_us_per_delivery"), 0),
            rss=f"{rss['before_bytes'] / 1e6:.0f} -> {rss['subscribed_bytes'] / 1e6:.0f}",
            per=_num(per / 1000, 1) if per is not None else "-",
            pbx=_num(row["pbx"]["query_in_session_per_event"], 2),
            slow=row["endings"]["slow_consumer_closes"],
            missed=f"{missed:,}",
            cpu=_percent(cpu.get("gateway_percent")),
            load=_percent(cpu.get("load_percent")),
            other=_num(cpu.get("other_cores"), 2),
        )
        + (f"\n    settings: {row['settings']}" if row.get("settings") else "")
        + _fanout_notes(row)
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _fanout_notes(row: dict[str, Any]) -> str:
    notes = []
    if row.get("connect_failures"):
        notes.append(
            f"{row['connect_failures']} subscribers failed to connect: "
            f"{row.get('connect_failure_reasons')}"
        )
    source = (row.get("gateway_live") or {}).get("source")
    if source is not None and source != row["mode"]:
        notes.append(f"the gateway's live source was {source}, not {row['mode']}")
    if row.get("latency_from", "simulator") != "simulator":
        notes.append(f"latencies start at the {row['latency_from']} (no simulator stamp)")
    if row["initial_updates"] != row["subscribers"]:
        notes.append(f"{row['initial_updates']} INITIAL updates for {row['subscribers']}")
    if row["unmatched_updates"]:
        notes.append(f"{row['unmatched_updates']} updates matched no change (folded or repeated)")
    if row["endings"]["error_codes"]:
        notes.append(f"errors: {row['endings']['error_codes']}")
    if row.get("ignored_settings"):
        notes.append(f"settings this gateway does not have: {row['ignored_settings']}")
    return "".join(f"\n    !! {note}" for note in notes)


def _fanout(rows: list[dict[str, Any]]) -> str:
    lines = ["\n== Fan-out: live subscriptions (latency to the last subscriber of a room)"]
    for row in rows:
        burst = row.get("burst") or {}
        what = (
            "events"
            if row["mode"] == "events"
            else f"polling every {row['poll_interval_s']:g} s (events off)"
        )
        capacity = (
            f"; back to back {_num(burst.get('events_per_s'), 1)} changes/s "
            f"({_num(burst.get('deliveries_per_s'), 0)} updates/s, "
            f"{_num((burst.get('cpu') or {}).get('gateway_us_per_delivery'), 0)} us of gateway "
            "CPU each)"
            if burst
            else ""
        )
        per = (row["rss"].get("per_subscriber_bytes") or 0) / 1000
        lines.append(
            f"  {row['subscribers']:>6,} subscribers, {what}: at "
            f"{_num(row['events_per_s'], 1)} changes/s p50 "
            f"{_num(row['latency_to_last_ms']['p50'], 1)} ms, p99 "
            f"{_num(row['latency_to_last_ms']['p99'], 1)} ms{capacity}; "
            f"{_num(per, 1)} KB per subscriber; "
            f"{_num(row['pbx']['query_in_session_per_event'], 2)} PBX calls per change; "
            f"{row['endings']['slow_consumer_closes']} slow-consumer closes"
        )
    return "\n".join(lines)


def settings_words(label: str) -> str:
    """The gateway's settings in a workload's words: ``label`` says what differs, if anything."""
    return f"shipped defaults, except {label}" if label else "shipped defaults"


def targets(document: dict[str, Any]) -> str:
    """Issue 19's targets against this run's figures: met or not."""
    ratios, lines = document["ratios"], ["\n== Targets (issue 19), this run"]

    def verdict(ok: bool | None) -> str:
        return "?" if ok is None else "met" if ok else "NOT met"

    for label, floor, what in (("w1", 0.75, "hot query"), ("w5", 0.3, "random reads (w5)")):
        pair = ratios.get(label)
        if not pair:
            continue
        share, apollo = pair.get("gateway/limit"), pair.get("gateway/apollo")
        ok = None if share is None else share >= floor and (apollo is None or apollo > 1)
        settings = next(
            (
                run.get("settings")
                for run in document.get("runs", [])
                if run.get("workload") == label and run.get("target") == "gateway"
            ),
            "",
        )
        lines.append(
            f"  {what}: {_num(share, 3)} of the ceiling (target >= {floor}), "
            f"{_times(apollo)} Apollo's rate (target > 1x): {verdict(ok)}"
            f" ({settings_words(settings)})"
        )
    for row in document.get("cold_burst", []):
        if row["target"] == "gateway":
            lines.append(
                f"  cold burst ({row['settings']}): {row['requests']} requests for different "
                "cold rooms cost "
                f"{row['pbx_calls']} PBX calls (target <= 3), {row['errors']} errors"
                f"{' ' + str(row['error_codes']) if row.get('error_codes') else ''}, p99 "
                f"{_num(row['latency_ms']['p99'], 1)} ms: {verdict(row['pbx_calls'] <= 3)}"
            )
    return "\n".join(lines) if len(lines) > 1 else ""


def run_row(run: dict[str, Any]) -> str:
    """One measured window."""
    server, pbx = run["server"], run["pbx"]
    if run["workload"] == "fleet":
        target = f"fleet x{run['workers']}"
    else:
        target = run["target"] if run["workers"] == 1 else f"gw x{run['workers']}"
    same, check = run.get("same_bytes_as_gateway"), run.get("body_check")
    note = "" if same is None or same else "  (response differs from the gateway's!)"
    if check == "canonical JSON":
        note = "  (same JSON as the gateway's, keys in another order)"
    return (
        _ROW.format(
            target=target,
            stack=run["stack"],
            rps=_num(run["rps"]),
            p50=_num(run["latency_ms"]["p50"], 2),
            p99=_num(run["latency_ms"]["p99"], 2),
            errors=f"{run['errors']['total']:,}",
            pbx=_num(pbx["per_1000_requests"], 2),
            one="-" if pbx.get("one_request_calls") is None else str(pbx["one_request_calls"]),
            rss=megabytes(server["peak_rss_bytes"]),
            cpu=f"{server['cpu_percent']:.0f}%",
            cpu_req=_num(server["cpu_ms_per_request"], 3),
            other=_num(run["machine"]["other_cores"], 2),
            client=f"{run['tool']} ({run['client']['cpu_percent']:.0f}%)",
        )
        + note
    )


def summary(document: dict[str, Any]) -> str:
    """Ratios, w3's scaling table, w4's verdict, the workers table, the client check."""
    parts = [_ratios(document["ratios"])] if document["ratios"] else []
    if document["w3_scaling"]:
        parts.append(_scaling(document["w3_scaling"]))
    w4 = [r for r in document["runs"] if r["workload"] == "w4" and r["target"] == "gateway"]
    if w4:
        parts.append(_w4(w4[0]))
    workers = [r for r in document["runs"] if r["workload"] == "workers"]
    if workers:
        parts.append(_workers(workers))
    fleet = [r for r in document["runs"] if r["workload"] == "fleet"]
    if fleet:
        parts.append(_fleet(fleet, document.get("fleet_vs_workers", [])))
    if document.get("fanout"):
        parts.append(_fanout(document["fanout"]))
    verdicts = targets(document)
    if verdicts:
        parts.append(verdicts)
    if document["runs"]:
        parts.append(_client_check(document))
    noisy = [r for r in document["runs"] if (r["machine"]["other_cores"] or 0) > 0.25]
    if noisy:
        parts.append(
            f"\n!! {len(noisy)} window(s) shared the machine with other work (over 0.25 cores "
            "busy outside this run: "
            + ", ".join(f"{r['label']} {r['target']}" for r in noisy)
            + "); rerun those on a quiet machine before trusting them"
        )
    if document["skipped"]:
        parts.append("\n== Skipped\n" + "\n".join(f"  {s}" for s in document["skipped"]))
    load = document.get("loadavg_end")
    parts.append(
        f"\nfinished in {document['elapsed_s']:.0f} s"
        + (f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else "")
    )
    return "\n".join(parts)


def _ratios(ratios: dict[str, dict[str, float | None]]) -> str:
    lines = [
        "\n== Ratios, each workload measured in one run (X/limit: share of the bare-HTTP "
        "ceiling, the Starlette app replaying the gateway's bytes; gateway/X: how many times "
        "X's rate the gateway reached; CPU per request moves less with noise)",
        f"  {'workload':<10} {'gateway/limit':>14} {'apollo/limit':>13} {'yoga/limit':>11} "
        f"{'gateway/apollo':>15} {'gateway/yoga':>13} {'gateway/naive':>14} "
        f"{'CPU/req gw/limit':>17}",
    ]
    for label, pair in ratios.items():
        naive, bound = pair.get("gateway/naive"), pair.get("gateway/naive_at_least")
        shown = f"> {bound:,.0f}x" if bound is not None else _times(naive)
        lines.append(
            f"  {label:<10} {_num(pair.get('gateway/limit'), 3):>14} "
            f"{_num(pair.get('apollo/limit'), 3):>13} {_num(pair.get('yoga/limit'), 3):>11} "
            f"{_times(pair.get('gateway/apollo')):>15} {_times(pair.get('gateway/yoga')):>13} "
            f"{shown:>14} {_times(pair.get('cpu_per_request gateway/limit')):>17}"
        )
    for label, pair in ratios.items():
        if pair.get("gateway/gw-nolog") is not None:
            lines.append(
                f"  {label}: the shipped gateway (request log on) reached "
                f"{pair['gateway/gw-nolog']:.3f} of the rate of the same gateway with the "
                "request log off (gw-nolog), in the same rounds"
            )
    for label, pair in ratios.items():
        if pair.get("gateway/gw-noplan") is not None:
            lines.append(
                f"  {label}: the shipped gateway (compiled plans on) reached "
                f"{pair['gateway/gw-noplan']:.1f}x the rate of the same gateway with plans off "
                "(gw-noplan: strawberry executes every read), in the same rounds"
            )
    if any("gateway/naive_at_least" in pair for pair in ratios.values()):
        lines.append(
            "  > Nx: the naive app finished no request in the window (each waits on many "
            "serial PBX calls), so its rate is under 1/window"
        )
    return "\n".join(lines)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}x"


def _scaling(rows: list[dict[str, Any]]) -> str:
    lines = [
        "\n== w3 scaling: `conferences` (all rooms, all fields) as the room count grows",
        f"  {'rooms':>7} {'response':>10} {'gw p50 ms':>10} {'limit p50':>10} {'gw/limit':>9} "
        f"{'naive p50':>10} {'gw CPU ms/r':>12} {'gw peak RSS':>12} {'state B/room':>13} "
        f"{'marginal B/room':>16}",
    ]
    for row in rows:
        lines.append(
            f"  {row['rooms']:>7,} {megabytes(row.get('response_bytes')):>10} "
            f"{_num(row.get('gateway_ms_p50'), 1):>10} {_num(row.get('limit_ms_p50'), 2):>10} "
            f"{_num(row.get('gateway/limit_time'), 0):>8}x "
            f"{_num(row.get('naive_ms_p50'), 1):>10} "
            f"{_num(row.get('gateway_cpu_ms_per_request'), 1):>12} "
            f"{megabytes(row.get('gateway_peak_rss_bytes')):>12} "
            f"{_num(row.get('state_bytes_per_room'), 0):>13} "
            f"{_num(row.get('marginal_bytes_per_room'), 0):>16}"
        )
    lines.append(
        "  state B/room: RSS growth when one request fills the cache, / rooms (includes the "
        "allocator's keep); marginal: the same growth between two room counts"
    )
    return "\n".join(lines)


def _w4(run: dict[str, Any]) -> str:
    per100 = run["pbx"]["per_100_requests"]
    errors = run["errors"]["total"]
    calls_ok = per100 is not None and per100 <= 1.0
    verdict = "met" if calls_ok and errors == 0 else "NOT met"
    return (
        f"\n== w4 verdict: {_num(per100, 3)} PBX calls per 100 client requests "
        f"({run['pbx']['calls_total']:,} calls, {run['requests']:,} requests; target <= 1), "
        f"{errors:,} errors (target 0): {verdict}"
    )


def _workers(runs: list[dict[str, Any]]) -> str:
    lines = [
        "\n== uvicorn --workers N (each worker logs in and caches on its own)",
        f"  {'workers':>7} {'req/s':>9} {'p99 ms':>8} {'errors':>7} {'PBX/100 req':>12} "
        f"{'query calls':>12} {'logins':>7} {'peak RSS (sum)':>15} {'srv CPU':>8}",
    ]
    for run in runs:
        lines.append(
            f"  {run['workers']:>7} {_num(run['rps']):>9} {_num(run['latency_ms']['p99'], 1):>8} "
            f"{run['errors']['total']:>7,} {_num(run['pbx']['per_100_requests'], 3):>12} "
            f"{run['pbx']['query_calls']:>12,} {run['pbx']['startup_logins'] or 0:>7} "
            f"{megabytes(run['server']['peak_rss_bytes']):>15} "
            f"{run['server']['cpu_percent']:>7.0f}%"
        )
    lines.append("  logins: at start-up, one per worker (none during the runs)")
    return "\n".join(lines)


def _fleet(runs: list[dict[str, Any]], versus: list[dict[str, Any]]) -> str:
    lines = [
        "\n== uvicorn --workers N sharing one Redis (one PBX session, one cache, one PBX cap)",
        f"  {'workers':>7} {'req/s':>9} {'p99 ms':>8} {'errors':>7} {'PBX/100 req':>12} "
        f"{'query calls':>12} {'logins':>7} {'PBX max conc':>13} {'Redis cmd/req':>14} "
        f"{'Redis CPU':>10} {'peak RSS (sum)':>15} {'srv CPU':>8}",
    ]
    for run in runs:
        redis = run.get("redis") or {}
        redis_cpu = (
            f"{100 * redis['cpu_s'] / run['duration_s']:.0f}%"
            if redis.get("cpu_s") is not None and run["duration_s"]
            else "-"
        )
        lines.append(
            f"  {run['workers']:>7} {_num(run['rps']):>9} {_num(run['latency_ms']['p99'], 1):>8} "
            f"{run['errors']['total']:>7,} {_num(run['pbx']['per_100_requests'], 3):>12} "
            f"{run['pbx']['query_calls']:>12,} {run['pbx']['startup_logins'] or 0:>7} "
            f"{run['pbx']['max_in_flight']:>13} {_num(redis.get('commands_per_request'), 1):>14} "
            f"{redis_cpu:>10} {megabytes(run['server']['peak_rss_bytes']):>15} "
            f"{run['server']['cpu_percent']:>7.0f}%"
        )
    lines.append(
        "  logins: at start-up, for the whole fleet; PBX max conc: the most calls the PBX "
        "held at once (the cap is 2 for the fleet, 2 per worker without Redis)"
    )
    if versus:
        lines.append(
            "\n== workers without Redis -> with Redis, same worker count "
            "(req/s, PBX query calls in the window, start-up logins, PBX max concurrency)"
        )
        for row in versus:
            lines.append(
                f"  x{row['workers']:<3} req/s {_num(row['rps'][0], 0):>7} -> "
                f"{_num(row['rps'][1], 0):<7} ({_times(row['rps_fleet/workers'])})  "
                f"query calls {row['query_calls'][0]:>5,} -> {row['query_calls'][1]:<5,}  "
                f"logins {row['startup_logins'][0] or 0} -> {row['startup_logins'][1] or 0}  "
                f"PBX max conc {row['pbx_max_in_flight'][0]} -> {row['pbx_max_in_flight'][1]}  "
                f"errors {row['errors'][0]:,} -> {row['errors'][1]:,}"
            )
    return "\n".join(lines)


def _client_check(document: dict[str, Any]) -> str:
    runs = document["runs"]
    lines = ["\n== Is the load generator the bottleneck?"]
    gateway = [r for r in runs if r["target"] == "gateway" and r["workers"] == 1]
    if gateway:
        busiest = max(gateway, key=lambda r: r["client"]["cpu_percent"])
        lines.append(
            f"  client CPU during single-process gateway runs: at most "
            f"{busiest['client']['cpu_percent']:.0f}% of its thread/process "
            f"({busiest['label']}), while the gateway used up to "
            f"{max(r['server']['cpu_percent'] for r in gateway):.0f}% of a core"
        )
    for label, pair in document["ratios"].items():
        limit = pair.get("gateway/limit")
        if limit is not None and label in ("w1", "w2"):
            lines.append(
                f"  {label}: the same client drove the limit app {1 / limit:,.1f}x faster "
                "than the gateway"
                if limit
                else ""
            )
    checks = document["loadgen_check"]
    if checks:
        limit_runs = [r for r in runs if r["label"] == "w1" and r["target"] == "limit"]
        rates = [*limit_runs, *checks]
        lines.append(
            "  w1 limit app under each client: "
            + "; ".join(
                f"{r['tool']} {r['rps']:,.0f} req/s (client CPU {r['client']['cpu_percent']:.0f}%)"
                for r in rates
            )
        )
    return "\n".join(line for line in lines if line)


# --- comparing two result files ---------------------------------------------------------


def _key(run: dict[str, Any]) -> tuple[str, str, str, int]:
    return (run["label"], run["target"], run["stack"], run["workers"])


def _change(old: float | None, new: float | None) -> str:
    if old is None or new is None:
        return "-"
    if old == 0:
        return "=" if new == 0 else "new"
    return f"{(new - old) / old * 100:+.0f}%"


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Run by run: requests/s, p50, p99, PBX calls, peak RSS, CPU per request, old -> new."""
    old_runs = {_key(run): run for run in old["runs"]}
    lines = [
        f"old: {old['started_at']} git {old['environment']['git'].get('commit')}   "
        f"new: {new['started_at']} git {new['environment']['git'].get('commit')}",
        f"  {'run':<34} {'req/s old -> new':>24} {'chg':>6} {'p50 ms':>18} {'p99 ms':>18} "
        f"{'PBX/1k':>13} {'peak RSS':>19} {'CPU ms/r':>15}",
    ]
    for run in new["runs"]:
        before = old_runs.get(_key(run))
        name = f"{run['label']} {run['target']} {run['stack']}" + (
            f" x{run['workers']}" if run["workers"] != 1 else ""
        )
        if before is None:
            lines.append(f"  {name:<34} (not in the old file)")
            continue

        def pair(
            get: Any, digits: int = 1, width: int = 18, old: Any = before, new: Any = run
        ) -> str:
            return f"{_num(get(old), digits)} -> {_num(get(new), digits)}".rjust(width)

        lines.append(
            f"  {name:<34} {pair(lambda r: r['rps'], 0, 24)} "
            f"{_change(before['rps'], run['rps']):>6} "
            f"{pair(lambda r: r['latency_ms']['p50'], 2)} "
            f"{pair(lambda r: r['latency_ms']['p99'], 2)} "
            f"{pair(lambda r: r['pbx']['per_1000_requests'], 1, 13)} "
            f"{pair(lambda r: r['server']['peak_rss_bytes'] / 1e6, 1, 19)} "
            f"{pair(lambda r: r['server']['cpu_ms_per_request'], 2, 15)}"
        )
    missing = [key for key in old_runs if key not in {_key(run) for run in new["runs"]}]
    for key in missing:
        lines.append(f"  {' '.join(map(str, key[:3])):<34} (only in the old file)")
    lines.extend(_compare_fanout(old.get("fanout") or [], new.get("fanout") or []))
    return "\n".join(lines)


def _compare_fanout(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Fan-out rows by label: latency to the last subscriber, capacity, CPU, memory."""
    if not new:
        return []
    before = {row["label"]: row for row in old}
    lines = [
        f"  {'fan-out row':<20} {'last p50 ms':>22} {'last p99 ms':>22} {'cap ev/s':>16} "
        f"{'CPU us/update':>15} {'KB/sub':>15} {'PBX/ev':>13}"
    ]
    for row in new:
        was = before.get(row["label"])
        if was is None:
            lines.append(f"  {row['label']:<20} (not in the old file)")
            continue

        def pair(get: Any, digits: int, width: int, a: Any = was, b: Any = row) -> str:
            return f"{_num(get(a), digits)} -> {_num(get(b), digits)}".rjust(width)

        lines.append(
            f"  {row['label']:<20} "
            f"{pair(lambda r: r['latency_to_last_ms']['p50'], 1, 22)} "
            f"{pair(lambda r: r['latency_to_last_ms']['p99'], 1, 22)} "
            f"{pair(lambda r: (r.get('burst') or {}).get('events_per_s'), 1, 16)} "
            f"{pair(lambda r: _burst_cpu(r), 0, 15)} "
            f"{pair(lambda r: r['rss']['per_subscriber_bytes'] / 1000, 1, 15)} "
            f"{pair(lambda r: r['pbx']['query_in_session_per_event'], 2, 13)}"
        )
    return lines


def _burst_cpu(row: dict[str, Any]) -> float | None:
    cpu = ((row.get("burst") or {}).get("cpu")) or {}
    value: float | None = cpu.get("gateway_us_per_delivery")
    return value
