"""Profile the gateway with py-spy on the workloads asked for (w1, w2, w5, w3/1000), and
summarise where time goes.

py-spy starts the gateway itself (``py-spy record -- python -m bench.serve gateway``):
attaching to a running pid needs ptrace rights a container may not grant, starting it
does not. Sampling is non-blocking, so the gateway is not paused. The folded stacks are
kept (``<out>-profile.txt``, the input of flamegraph.pl and speedscope), drawn as a flame
graph (``<out>-profile.svg``), and summarised: self time per package and per function,
and total (inclusive) time per function. Start-up (imports) is left out of the summary.
"""

from __future__ import annotations

import html
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import workloads
from bench.loadgen import Load
from bench.workloads import Workload

if TYPE_CHECKING:
    from bench.runner import Bench

_LINE = re.compile(r":\d+\)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
_PACKAGES = ("gateway", "bench", "strawberry", "graphql", "starlette", "uvicorn", "httptools",
             "uvloop", "h11", "httpx", "httpcore", "anyio", "cachetools", "asyncio", "json",
             "cross_web")  # fmt: skip
_PHASES = {
    # Where a request's time goes, by the frames it is spent under (they may nest).
    "GraphQL parse": ("_parse_operation_document (", "parse (graphql/language/parser"),
    "GraphQL validation": ("validate_document (",),
    "GraphQL execution (resolvers included)": ("graphql/execution/",),
    "Query resolvers": ("Query.conferences (", "Query.conference ("),
    "ConferenceNode.from_record": ("ConferenceNode.from_record (",),
    "store and DataLoader": ("ConferenceStore.", "DataLoader."),
    "field extension wrappers (PIN permissions)": (
        "wrap_field_extensions.<locals>.extension_resolver (",
    ),
    "JSON encoding": ("encode_json (",),
    "observability (logs, metrics)": ("gateway/observability/",),
}
_START_UP = ("_find_and_load", "Router.lifespan (")  # imports, the app's start and stop


def py_spy() -> str | None:
    """py-spy next to this interpreter (a venv install) or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile(bench: Bench, out_prefix: Path) -> dict[str, Any]:
    """Profile, of the workloads asked for: w1 (the hot path), w2 (aliases), w5 (random
    reads: execution) and w3 on 1,000 rooms (per-field cost)."""
    executable = py_spy()
    if executable is None:
        bench.say("\n== Profile: skipped (py-spy is not installed: pip install py-spy)")
        return {"skipped": "py-spy not installed"}
    duration = max(bench.options.duration, 5.0)
    chosen = bench.options.workloads
    plan = [
        workload
        for key, workload in (
            ("w1", workloads.w1(duration)),
            ("w2", workloads.w2(duration)),
            ("w5", workloads.w5(duration, pool=bench.options.w5_pool)),
            ("w3", workloads.w3(1_000, duration)),
        )
        if key in chosen
    ]
    return {
        workload.label: profile_workload(bench, executable, workload, out_prefix)
        for workload in plan
    }


def profile_workload(
    bench: Bench, executable: str, workload: Workload, out_prefix: Path
) -> dict[str, Any]:
    """Run ``workload`` against a py-spy-wrapped gateway; write the files; print a summary."""
    name = workload.label.replace("/", "-")
    raw = Path(f"{out_prefix}-profile-{name}.txt")
    svg = Path(f"{out_prefix}-profile-{name}.svg")
    raw.parent.mkdir(parents=True, exist_ok=True)
    wrapper = (executable, "record", "--format", "raw", "--rate", "250", "--nonblocking",
               "--output", str(raw), "--")  # fmt: skip
    bench.say(
        f"\n== Profile: py-spy on the gateway, {workload.label} ({workload.title}), "
        f"{workload.duration:g} s"
    )
    with (
        bench.factory.simulator(workload.rooms) as simulator,
        bench.factory.target("gateway", simulator, argv_prefix=wrapper) as target,
    ):
        if workload.key == "w5":  # every room in the store first: one PBX call, as in the run
            target.post(workloads.all_rooms("number"))
        target.capture(workload.bodies)
        simulator.settle()
        load = Load(target.process.base_url, workload.bodies, workload.connections,
                    workload.duration, random=workload.random)  # fmt: skip
        result = bench.loadgen.run(load, bench.workdir)
        target.process.stop_wrapped()
    stacks = read_folded(raw)
    title = f"gateway, {workload.label}, {result.rps:,.0f} req/s under py-spy"
    svg.write_text(flame_graph(stacks, title))
    summary = summarise(stacks)
    summary.update({"raw": str(raw), "svg": str(svg), "rps_under_profiler": round(result.rps)})
    bench.say(format_summary(summary))
    return summary


def read_folded(path: Path) -> Counter[tuple[str, ...]]:
    """Folded stacks (``a;b;c count``), root first, without start-up (import) samples."""
    stacks: Counter[tuple[str, ...]] = Counter()
    if not path.exists():
        return stacks
    for line in path.read_text(errors="replace").splitlines():
        text, _, count = line.rpartition(" ")
        if not text or not count.isdigit():
            continue
        frames = tuple(text.split(";"))
        if any(frame.startswith(_START_UP) for frame in frames):
            continue
        stacks[frames] += int(count)
    return stacks


def _where(frame: str) -> tuple[str, str]:
    """``(function (short/file.py), package)`` for one py-spy frame."""
    match = _FRAME.match(frame)
    func, file = (match["func"], match["file"]) if match else (frame, "")
    short = file.split("site-packages/")[-1].split("/lib/python3")[-1].lstrip("/")
    if "/work/" in short or short.startswith("/"):
        short = "/".join(short.split("/")[-3:])
    parts = short.replace("\\", "/").split("/")
    package = next((name for name in parts if name in _PACKAGES), None)
    if package is None:
        stem = parts[-1].removesuffix(".py") if parts else ""
        if stem in _PACKAGES:
            package = stem
        elif short.startswith("<string>"):
            package = "generated code (dataclass methods)"
        elif len(parts) == 1 or short.startswith("<frozen"):
            package = "stdlib"
        else:
            package = parts[0]
    return f"{func} ({short})", package


_OURS = frozenset({"gateway", "strawberry", "graphql", "json", "cachetools"})


def _package(tagged: str) -> str:
    return tagged.rpartition("\t")[2]


def summarise(stacks: Counter[tuple[str, ...]], top: int = 15) -> dict[str, Any]:
    """Self time per package and function, total time per function, as shares of samples."""
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in stacks.items():
        names = [_where(frame) for frame in frames]
        leaf, package = names[-1]
        own[leaf] += count
        packages[package] += count
        for name, package in set(names):
            inclusive[f"{name}\t{package}"] += count

    def share(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [
            {
                "name": name.partition("\t")[0],
                "samples": count,
                "percent": round(100 * count / total, 1),
            }
            for name, count in counter.most_common(n)
        ]

    # Total time only for the code a change here can speed up; the server's call chain
    # (uvicorn, Starlette's middleware) sits under every sample and says nothing.
    inner = Counter({name: n for name, n in inclusive.items() if _package(name) in _OURS})
    phases: Counter[str] = Counter()
    for frames, count in stacks.items():
        for phase, markers in _PHASES.items():
            if any(marker in frame for frame in frames for marker in markers):
                phases[phase] += count
    return {
        "samples": total,
        "phases": share(phases, len(phases)) if total else [],
        "self_by_package": share(packages, len(packages)) if total else [],
        "self_by_function": share(own, top) if total else [],
        "total_by_function": share(inner, top + 5) if total else [],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The printed form of :func:`summarise`'s result."""
    lines = [
        f"  {summary['samples']:,} samples (start-up left out); "
        f"{summary.get('rps_under_profiler', 0):,} req/s while sampled",
        "  time under: " + ", ".join(f"{r['name']} {r['percent']}%" for r in summary["phases"]),
        "  self time by package: "
        + ", ".join(f"{r['name']} {r['percent']}%" for r in summary["self_by_package"]),
        "  top self time (where the CPU is):",
        *(f"    {r['percent']:5.1f}%  {r['name']}" for r in summary["self_by_function"]),
        "  top total time in gateway, strawberry, graphql-core, json (what it is spent under):",
        *(f"    {r['percent']:5.1f}%  {r['name']}" for r in summary["total_by_function"]),
        f"  files: {summary.get('svg')} (flame graph), {summary.get('raw')} (folded stacks)",
    ]
    return "\n".join(lines)


def flame_graph(stacks: Counter[tuple[str, ...]], title: str, width: int = 1400) -> str:
    """A static SVG flame graph (hover a box for its name and share)."""
    tree: dict[str, Any] = {"n": 0, "c": {}}
    for frames, count in stacks.items():
        node = tree
        node["n"] += count
        for frame in frames:
            name = _LINE.sub(")", frame)  # one box per function, not per line
            node = node["c"].setdefault(name, {"n": 0, "c": {}})
            node["n"] += count
    total = max(tree["n"], 1)
    depth = max((len(frames) for frames in stacks), default=1)
    row, top = 16, 30
    height = top + row * (depth + 1)
    boxes: list[str] = []

    def draw(node: dict[str, Any], x: float, level: int) -> None:
        for name, child in sorted(node["c"].items()):
            w = width * child["n"] / total
            if w >= 0.3:
                y = height - row * (level + 1)
                hue = 10 + hash(name.split(" (")[0]) % 50
                label = html.escape(name[: int(w / 7)]) if w > 30 else ""
                tip = html.escape(f"{name}: {child['n']} samples, {100 * child['n'] / total:.1f}%")
                boxes.append(
                    f'<g><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
                    f'height="{row - 1}" fill="hsl({hue},80%,60%)"/>'
                    f'<text x="{x + 2:.1f}" y="{y + 12}">{label}</text></g>'
                )
                draw(child, x, level + 1)
            x += w

    draw(tree, 0.0, 0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<text x="10" y="20" font-size="14">{html.escape(title)}</text>'
        + "".join(boxes)
        + "</svg>"
    )
