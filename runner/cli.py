"""Command line of the runner.

    python -m runner [run] [--entrypoint FILE] [--timeout SECONDS] [--overlay-policy protect|override]
                     [--clean-outputs] [-- ARGS...]
    python -m runner cache list [--json]
    python -m runner cache prune [--all] [--older-than DAYS] [--dry-run]

Settings also come from the environment (the oSPARC way): INPUT_FOLDER, OUTPUT_FOLDER,
LOG_FOLDER, INPUT_1..5, SC_COMP_SERVICES_SCHEDULED_AS, SIMCORE_NANO_CPUS_LIMIT,
SIMCORE_MEMORY_BYTES_LIMIT, RUNNER_ENTRYPOINT, RUNNER_TIMEOUT, RUNNER_OVERLAY_POLICY,
RUNNER_CLEAN_OUTPUTS, RUNNER_CACHE_DIR, RUNNER_UV, RUNNER_WORK_DIR, RUNNER_BASE_PREFIX,
RUNNER_KILL_GRACE, RUNNER_HEARTBEAT_SECONDS, RUNNER_LOG_LEVEL (see runner/README.md).
"""

from __future__ import annotations

import os
import sys

from runner import __version__
from runner.logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

EPILOG = (
    "Environment: INPUT_FOLDER, OUTPUT_FOLDER (required), LOG_FOLDER, INPUT_1..5, SC_COMP_SERVICES_SCHEDULED_AS, "
    "SIMCORE_NANO_CPUS_LIMIT, SIMCORE_MEMORY_BYTES_LIMIT, RUNNER_ENTRYPOINT, RUNNER_TIMEOUT, RUNNER_OVERLAY_POLICY, "
    "RUNNER_CLEAN_OUTPUTS, RUNNER_CACHE_DIR, RUNNER_UV, RUNNER_WORK_DIR, RUNNER_BASE_PREFIX, RUNNER_KILL_GRACE, "
    "RUNNER_HEARTBEAT_SECONDS, RUNNER_LOG_LEVEL; uv honours UV_INDEX_URL, UV_EXTRA_INDEX_URL, UV_FIND_LINKS, "
    "UV_OFFLINE. See runner/README.md."
)


def main(argv: Sequence[str]) -> int:
    log.setup()
    arguments = list(argv)
    if arguments[:1] == ["cache"]:
        return _cache(arguments[1:])
    if arguments[:1] == ["run"]:
        arguments = arguments[1:]
    return _run(arguments)


def _run(arguments: list[str]) -> int:
    from runner.job import Options, run_job

    script_args: list[str] = []
    if "--" in arguments:
        cut = arguments.index("--")
        arguments, script_args = arguments[:cut], arguments[cut + 1 :]
    if not arguments:
        return run_job(Options(args=script_args))
    import argparse  # only when there are options to read: most jobs have none

    parser = argparse.ArgumentParser(prog="python -m runner", description="Run one oSPARC job.", epilog=EPILOG)
    parser.add_argument("--entrypoint", help="script to run, relative to the code folder (default: discovered)")
    parser.add_argument("--timeout", type=float, help="seconds before the script is stopped (RUNNER_TIMEOUT)")
    parser.add_argument("--overlay-policy", choices=("protect", "override"), help="RUNNER_OVERLAY_POLICY")
    parser.add_argument(
        "--clean-outputs",
        action="store_true",
        help="remove what an earlier run left in OUTPUT_FOLDER (RUNNER_CLEAN_OUTPUTS=1); otherwise it is refused",
    )
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    options = parser.parse_args(arguments)
    return run_job(
        Options(options.entrypoint, options.timeout, options.overlay_policy, script_args, options.clean_outputs)
    )


def _cache(arguments: list[str]) -> int:
    import argparse
    import json
    import time

    from runner.cache import DEFAULT_MAX_AGE_DAYS, Cache, default_cache_root, human_size

    parser = argparse.ArgumentParser(prog="python -m runner cache", description="Inspect or clean the overlay cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list overlays")
    listing.add_argument("--json", action="store_true", help="print JSON")
    prune = commands.add_parser("prune", help="remove half-built and unused overlays")
    prune.add_argument("--all", action="store_true", help="remove every overlay not in use")
    prune.add_argument("--older-than", type=float, default=DEFAULT_MAX_AGE_DAYS, metavar="DAYS",
                       help=f"remove overlays unused for DAYS (default {DEFAULT_MAX_AGE_DAYS:g})")  # fmt: skip
    prune.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    options = parser.parse_args(arguments)
    cache = Cache(default_cache_root(os.environ))
    if options.command == "list":
        entries = cache.entries()
        if options.json:
            rows = [
                {"key": e.key, "state": e.state, "size": e.size, "created": e.created, "last_used": e.last_used,
                 "requirements": e.requirements, "path": str(e.path)}
                for e in entries
            ]  # fmt: skip
            print(json.dumps({"root": str(cache.root), "overlays": rows}, indent=2))
            return 0
        print(f"overlay cache: {cache.root}")
        if not entries:
            print("  (empty)")
        for e in entries:
            used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)) if e.last_used else "-"
            packages = ", ".join(e.requirements[:4]) + (" …" if len(e.requirements) > 4 else "")
            print(f"  {e.key}  {e.state:<10}  {human_size(e.size):>10}  last used {used}  {packages}")
        return 0
    removed = cache.prune(everything=options.all, older_than_days=options.older_than, dry_run=options.dry_run)
    verb = "would remove" if options.dry_run else "removed"
    for entry, reason in removed:
        print(f"{verb} {entry.key} ({reason}, {human_size(entry.size)})")
    freed = sum(entry.size for entry, _ in removed)
    print(f"{verb} {len(removed)} overlay(s), {human_size(freed)}", file=sys.stderr)
    return 0
