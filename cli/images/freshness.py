"""What must be up to date before an image is built: pixi.lock, the exports, the generated files.

A build refuses to start while any of them is stale, listing every problem at once. The
audit's `audit_lock` makes these same checks (and a few more) when it is there; without it
the build composes them from `cli.lock_status`, `cli.exports` and `cli.images.generated`.
"""

from __future__ import annotations

import logging

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


def audit_findings(workspace: Workspace, flavors: list[str]) -> list[str] | None:
    """The audit's lock checks (manifest, exports, generated files) when `cli.audit.lock` is there, else None."""
    try:
        from cli.audit.lock import audit_lock
    except ImportError:
        log.info("cli.audit.lock is not available: using the build's own freshness checks")
        return None
    try:
        return [finding.line() for finding in audit_lock(workspace, flavors).findings()]
    except UserError as error:
        return [error.one_line()]


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
    names = [spec.name for spec in specs]
    audited = audit_findings(workspace, names) if workspace.lock_path.is_file() else None
    if audited is not None:
        problems += audited
    else:
        lock_problems = stale_lock(workspace, names)
        problems += lock_problems
        if not lock_problems:  # the exports are compared with the lock
            problems += stale_exports(workspace)
        problems += stale_generated(workspace)
    if problems:
        raise StaleInputs(workspace, problems)
