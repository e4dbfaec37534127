"""Count crashes at exit (`Fatal Python error: PyGILState_Release`, exit 134; or SIGSEGV) over many processes.

Each process uses py-rattler (or rattler-build) and then exits; the crash, when it comes, comes
at interpreter finalization (see cli/process_exit.py for the cause). Three CLI invocations take
turns, all offline:

- solve:   `lock --update` of the committed flavors on the conda-forge subset (a real solve);
- refused: the same with a mirror on a closed local port (the fetch fails at once and the
           process exits straight after the error, where the abort was seen most);
- install: `install pytorch` of a small fixture workspace into a fresh prefix;

and fixture builds run `python -m tests.support.channel` (rattler-build assembles the packages,
py-rattler indexes the channel).

    python bench/stress_exit.py [--cli 300] [--fixtures 100] [--jobs 2]
    python bench/stress_exit.py --unprotected   # the same work ending with a normal interpreter exit

`--unprotected` runs the same code through a plain `python -c` that calls cli.app.main() or
build_channel() and lets Python finalize, to show what the fix removes. Exit status: 1 if any
protected process crashed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT / "tests" / "data" / "channels" / "conda-forge"
CRASH_STATUSES = {134, 139}  # SIGABRT, SIGSEGV as a shell reports them; a negative status is a signal too


@dataclass(frozen=True)
class Job:
    kind: str
    command: list[str]
    cwd: Path
    expected: int  # the exit status the command gives when it does not abort


@dataclass(frozen=True)
class Outcome:
    kind: str
    status: int
    crashed: bool  # killed by a signal (SIGABRT, SIGSEGV) or a fatal Python error
    seconds: float
    unexpected: bool  # any other exit status than the command's own
    stderr_tail: str


def closed_port() -> int:
    """A local port nothing listens on: connections to it are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_command(unprotected: bool, *args: str) -> list[str]:
    if unprotected:
        code = "import sys; from cli.app import main; sys.argv[0] = 'cli'; main()"
        return [sys.executable, "-c", code, *args]
    return [sys.executable, "-m", "cli", *args]


def fixture_command(unprotected: bool, channel: Path) -> list[str]:
    if unprotected:
        code = (
            "import sys; from pathlib import Path; "
            "from tests.support.channel import build_channel, gpu_stack_packages; "
            "build_channel(Path(sys.argv[1]), gpu_stack_packages())"
        )
        return [sys.executable, "-c", code, str(channel)]
    return [sys.executable, "-m", "tests.support.channel", str(channel)]


def fixture_workspace(folder: Path) -> Path:
    """A small locked workspace on a fixture channel (built here, in a process of its own)."""
    from tests.support.workspace import write_workspace

    channel = folder / "gpu-forge"
    subprocess.run(fixture_command(False, channel), env=child_env(), check=True, capture_output=True)
    workspace = write_workspace(folder / "fixture-ws", channel.as_uri(), flavors=("pytorch",))
    subprocess.run(
        [sys.executable, "-m", "cli", "lock"], cwd=workspace, env=child_env(), check=True, capture_output=True
    )
    return workspace


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["CONDA_OVERRIDE_CUDA"] = "12.4"
    return env


def cli_jobs(count: int, folder: Path, unprotected: bool) -> list[Job]:
    """COUNT CLI invocations, the three kinds taking turns; each solve writes its own workspace copy."""
    from tests.support.workspace import committed_workspace

    fixture = fixture_workspace(folder)
    lock = ["lock", "--update", "-e", "pytorch", "-e", "tensorflow", "--mirror"]
    subset = f"conda-forge={SUBSET.as_uri()}"
    refused = f"conda-forge=http://127.0.0.1:{closed_port()}/conda-forge"
    kinds = itertools.cycle(["solve", "refused", "install"])
    jobs = []
    for i, kind in zip(range(count), kinds, strict=False):
        if kind == "solve":
            workspace = committed_workspace(folder / "workspaces" / str(i))
            jobs.append(Job("cli solve", cli_command(unprotected, *lock, subset), workspace, 0))
        elif kind == "refused":
            workspace = committed_workspace(folder / "workspaces" / str(i))
            jobs.append(Job("cli refused", cli_command(unprotected, *lock, refused), workspace, 2))
        else:
            prefix = str(folder / "prefixes" / str(i))
            install = ["install", "pytorch", "--prefix", prefix, "--platform", "linux-64"]
            jobs.append(Job("cli install", cli_command(unprotected, *install), fixture, 0))
    return jobs


def fixture_jobs(count: int, folder: Path, unprotected: bool) -> list[Job]:
    return [
        Job("fixture build", fixture_command(unprotected, folder / "channels" / str(i)), folder, 0)
        for i in range(count)
    ]


def run(job: Job) -> Outcome:
    start = time.perf_counter()
    done = subprocess.run(job.command, cwd=job.cwd, env=child_env(), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    crashed = done.returncode < 0 or done.returncode in CRASH_STATUSES or "Fatal Python error" in done.stderr
    tail = "\n".join(done.stderr.strip().splitlines()[-6:])
    return Outcome(job.kind, done.returncode, crashed, seconds, done.returncode != job.expected, tail)


def report(outcomes: list[Outcome], unprotected: bool) -> int:
    runs = Counter(o.kind for o in outcomes)
    crashes = Counter(o.kind for o in outcomes if o.crashed)
    how = "normal interpreter exit (unprotected)" if unprotected else "exit before finalization (the CLI's way)"
    print(f"\n{how}\n")
    print("| processes | runs | crashes at exit | exit statuses | median s |")
    print("|---|---:|---:|---|---:|")
    for kind in runs:
        mine = [o for o in outcomes if o.kind == kind]
        times = sorted(o.seconds for o in mine)
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(Counter(o.status for o in mine).items()))
        print(f"| {kind} | {runs[kind]} | {crashes[kind]} | {statuses} | {times[len(times) // 2]:.2f} |")
    total = sum(crashes.values())
    print(f"| all | {len(outcomes)} | {total} | | |")
    shown = set()
    for outcome in outcomes:
        if (outcome.crashed or outcome.unexpected) and outcome.status not in shown:
            shown.add(outcome.status)
            print(f"\n{outcome.kind}: exit {outcome.status}\n{outcome.stderr_tail}")
    failures = sum(1 for o in outcomes if o.unexpected and not o.crashed)
    if failures:
        print(f"\n{failures} processes ended with another status than their command's own (not a crash)")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cli", type=int, default=300, help="CLI invocations (default 300)")
    parser.add_argument("--fixtures", type=int, default=100, help="fixture channel builds (default 100)")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time (default 2)")
    parser.add_argument("--unprotected", action="store_true", help="end each process with a normal interpreter exit")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="stress-exit-") as name:
        folder = Path(name)
        jobs = cli_jobs(args.cli, folder, args.unprotected) + fixture_jobs(args.fixtures, folder, args.unprotected)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(run, jobs))
        print(f"{len(jobs)} processes in {time.perf_counter() - start:.0f} s, {args.jobs} at a time")
    crashes = report(outcomes, args.unprotected)
    return 1 if crashes and not args.unprotected else 0


if __name__ == "__main__":
    sys.exit(main())
