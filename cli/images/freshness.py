"""What must be up to date before an image is built: pixi.lock, the exports, the generated files.

A build refuses to start while any of them is stale, listing every problem at once.
When the audit package offers its lock checks they are used too.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from cli.errors import UserError
from cli.images import naming
from cli.images.generated import stale_generated
from cli.images.plan import FlavorSpec
from cli.workspace import Workspace

log = logging.getLogger(__name__)


class StaleInputs(UserError):
    """Inputs of the build are missing or out of date; `details` lists each one."""

    def __init__(self, workspace: Workspace, problems: list[str]) -> None:
        self.details = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(
            f"refusing to build: {len(problems)} stale input(s)",
            path=workspace.root,
            fix="run `python -m cli lock`, `python -m cli export` and `python -m cli generate`, then build again",
        )


def stale_lock(workspace: Workspace, flavors: list[str]) -> list[str]:
    """pixi.lock missing, unreadable, or out of step with pixi.toml for these flavors."""
    from cli.lock_status import lock_mismatches
    from cli.lockfile import read_lock

    if not workspace.lock_path.is_file():
        return [f"{workspace.lock_path}: missing (run `python -m cli lock`)"]
    try:
        lock = read_lock(workspace)
    except UserError as error:
        return [error.one_line()]
    return [
        f"{workspace.lock_path}: {mismatch} (run `python -m cli lock`)"
        for mismatch in lock_mismatches(workspace, lock, flavors)
    ]


def stale_exports(workspace: Workspace) -> list[str]:
    from cli.exports import stale_exports as exports_check

    try:
        return exports_check(workspace)
    except UserError as error:
        return [error.one_line()]


def audit_problems(workspace: Workspace) -> list[str]:
    """The audit package's lock checks, once it provides `cli.audit.lock_problems(workspace)`."""
    try:
        audit = importlib.import_module("cli.audit")
    except ImportError:
        return []
    check: Callable[[Workspace], Any] | None = getattr(audit, "lock_problems", None)
    if check is None:
        log.info("cli.audit has no lock_problems(workspace) yet: skipping the audit checks")
        return []
    return [str(problem) for problem in check(workspace)]


def missing_dockerfiles(workspace: Workspace, specs: list[FlavorSpec]) -> list[str]:
    needed = [naming.COMMON_DOCKERFILE] + ([naming.FLAVOR_DOCKERFILE] if specs else [])
    return [
        f"{workspace.root / path}: missing (the build needs it; copy it from the runner repository)"
        for path in needed
        if not (workspace.root / path).is_file()
    ]


def check_fresh(workspace: Workspace, specs: list[FlavorSpec]) -> None:
    """Raise StaleInputs listing every missing or stale input of a build of `specs` (common needs only its files)."""
    problems = missing_dockerfiles(workspace, specs)
    if not specs:
        if problems:
            raise StaleInputs(workspace, problems)
        return
    lock_problems = stale_lock(workspace, [spec.name for spec in specs])
    problems += lock_problems
    if not lock_problems:  # the exports and the audit read the lock
        problems += stale_exports(workspace)
        problems += audit_problems(workspace)
    problems += stale_generated(workspace)
    if problems:
        raise StaleInputs(workspace, problems)
