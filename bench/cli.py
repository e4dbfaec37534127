"""Start-up of the CLI: `--help` and a cold `lock --check`, next to `python -c pass` and the work itself.

Every command runs as a new process (cold: no module imported yet; the page cache is whatever
the machine has), runs interleaved so that load from other processes spreads evenly. The
in-process rows run the same command again and again inside one process that has already
imported everything: what is left is the command's own work (reading, checking, solving).
`lock --check` judges the lock without solving; `lock --update` of both flavors on the
conda-forge subset in tests/data/channels is there for a real solve.

    python bench/cli.py [--repeat 10] [--imports]

Goals (2-core machine): `python -m cli --help` under 0.3 s; a cold `lock --check` of the
committed workspace under 1.0 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT / "tests" / "data" / "channels" / "conda-forge"
SOLVE_ARGS = ["lock", "--update", "-e", "pytorch", "-e", "tensorflow", "--mirror", f"conda-forge={SUBSET.as_uri()}"]
GOALS = {"--help": 0.3, "lock --check": 1.0}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_process(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall and CPU (user + system, all threads) seconds of one run, and its exit status."""
    cpu = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=child_env(), capture_output=True, check=False)
    return time.perf_counter() - start, children_cpu() - cpu, done.returncode


def in_process_times(args: list[str], cwd: Path, repeat: int) -> list[float]:
    """Run `cli ARGS` REPEAT+1 times in one fresh process; the first run pays the imports and is dropped."""
    code = (
        "import json, sys, time\n"
        "from cli.app import main\n"
        "from cli.process_exit import run_then_exit\n"
        "def bench():\n"
        "    times = []\n"
        f"    for _ in range({repeat + 1}):\n"
        "        sys.argv = ['cli', *ARGS]\n"
        "        start = time.perf_counter()\n"
        "        try:\n"
        "            main()\n"
        "        except SystemExit:\n"
        "            pass\n"
        "        times.append(time.perf_counter() - start)\n"
        "    print(json.dumps(times[1:]), file=sys.__stderr__)\n"
        "run_then_exit(bench)\n"
    ).replace("ARGS", repr(args))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=child_env(), capture_output=True, text=True, check=True
    )
    return [float(t) for t in json.loads(done.stderr.strip().splitlines()[-1])]


def import_breakdown(args: list[str], cwd: Path) -> list[tuple[str, float]]:
    """Cumulative import time of each top-level package `python -m cli ARGS` imports (one run)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cli", *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    totals: dict[str, float] = defaultdict(float)
    for match in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \|( *)([\w.]+)$", done.stderr, flags=re.MULTILINE):
        cumulative, indent, name = int(match.group(1)), len(match.group(2)), match.group(3)
        if indent == 1:  # imported by no other module: its cumulative time counts once
            totals[name.split(".")[0]] += cumulative / 1e6
    return sorted(totals.items(), key=lambda item: -item[1])


def row(label: str, times: list[float], cpu: list[float] | None = None, goal: float | None = None) -> str:
    median = statistics.median(times)
    verdict = "" if goal is None else (" ✓" if median < goal else " ✗")
    goal_text = "" if goal is None else f"< {goal:.1f}"
    cpu_text = f"{statistics.median(cpu):.3f}" if cpu else ""
    return f"| {label} | {median:.3f}{verdict} | {min(times):.3f} | {max(times):.3f} | {cpu_text} | {goal_text} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10, help="runs of each command (default 10)")
    parser.add_argument("--imports", action="store_true", help="also print where each command's import time goes")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.support.workspace import committed_workspace

    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as name:
        workspace = committed_workspace(Path(name) / "ws")
        commands = {
            "`python -c pass`": [python, "-c", "pass"],
            "`python -m cli --help`": [python, "-m", "cli", "--help"],
            "`python -m cli lock --check` (committed workspace)": [python, "-m", "cli", "lock", "--check"],
            "`python -m cli lock --update` of both flavors on the subset (a solve)": [python, "-m", "cli", *SOLVE_ARGS],
        }
        times: dict[str, list[float]] = {label: [] for label in commands}
        cpu: dict[str, list[float]] = {label: [] for label in commands}
        statuses: dict[str, set[int]] = {label: set() for label in commands}
        load_before = os.getloadavg()[0]
        for _ in range(args.repeat):
            for label, command in commands.items():
                seconds, cpu_seconds, status = time_process(command, workspace)
                times[label].append(seconds)
                cpu[label].append(cpu_seconds)
                statuses[label].add(status)
        in_check = in_process_times(["lock", "--check"], workspace, args.repeat)
        in_solve = in_process_times(SOLVE_ARGS, workspace, args.repeat)
        breakdowns = (
            {
                "--help": import_breakdown(["--help"], workspace),
                "lock --check": import_breakdown(["lock", "--check"], workspace),
            }
            if args.imports
            else {}
        )

    print(f"{args.repeat} runs each, interleaved; seconds; 1-minute load average {load_before:.1f} at the start")
    print("(wall time on a busy machine includes waiting for a CPU; the CPU column does not)\n")
    print("| what | median | min | max | CPU median | goal |")
    print("|---|---:|---:|---:|---:|---|")
    for label in commands:
        goal = next((g for key, g in GOALS.items() if label.startswith(f"`python -m cli {key}`")), None)
        if "--update" in label:
            goal = None
        print(row(label, times[label], cpu[label], goal))
    print(row("in process: `lock --check` (committed workspace), imports done", in_check))
    print(row("in process: `lock --update` of both flavors (a solve), imports done", in_solve))
    for label, seen in statuses.items():
        if seen != {0}:
            print(f"\nnote: {label} exited with {sorted(seen)}")
    for command, breakdown in breakdowns.items():
        print(f"\nimports of `{command}` (cumulative s, top-level packages): ", end="")
        print(", ".join(f"{package} {seconds:.3f}" for package, seconds in breakdown[:10]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
