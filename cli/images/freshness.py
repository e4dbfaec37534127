"""What must be up to date before an image is built: pixi.lock, the exports, the generated files.

The exports include the Docker path's split (envs/_shared/ and envs/<flavor>/<subdir>.own.explicit),
which the shared stage and the flavor images install: `audit lock` checks them with the others.

A build refuses to start while any of them is stale, listing every problem at once: the
same findings as `python -m cli audit lock` for the flavors being built.
"""

from __future__ import annotations

import logging

from cli.audit.lock import audit_lock
from cli.errors import UserError
from cli.images import naming
from cli.images.plan import FlavorSpec
from cli.lockengine.manifest import Workspace

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


def lock_findings(workspace: Workspace, flavors: list[str]) -> list[str]:
    """The audit's lock checks for these flavors: pixi.lock vs. pixi.toml, the exports, the generated files."""
    if not workspace.lock_path.is_file():
        return [f"{workspace.lock_path}: missing (run `python -m cli lock`)"]
    try:
        return [finding.line() for finding in audit_lock(workspace, flavors).findings()]
    except UserError as error:
        return [error.one_line()]


def missing_dockerfiles(workspace: Workspace, specs: list[FlavorSpec]) -> list[str]:
    needed = [naming.COMMON_DOCKERFILE] + ([naming.SHARED_DOCKERFILE, naming.FLAVOR_DOCKERFILE] if specs else [])
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
    problems += lock_findings(workspace, [spec.name for spec in specs])
    if problems:
        raise StaleInputs(workspace, problems)
