"""The files `cli generate` derives from flavors/<name>/metadata.yml: run scripts and docker-compose.yml.

Each carries a "generated, do not edit" header; `stale_generated` compares every file with
what would be written now, which is how `generate --check` and `build` find a stale one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cli.fileio import atomic_write_text
from cli.flavors import discover_flavors
from cli.images import naming
from cli.images.compose import render_compose
from cli.images.plan import FlavorSpec, plan_builds
from cli.images.runscript import render_run_script
from cli.lockengine.manifest import Workspace

log = logging.getLogger(__name__)

EXECUTABLE = 0o755
REGULAR = 0o644


@dataclass(frozen=True)
class GeneratedFile:
    path: Path
    text: str
    mode: int = REGULAR


def flavor_specs(workspace: Workspace) -> list[FlavorSpec]:
    """Every flavor's validated metadata (a UserError names the first bad file and field)."""
    specs = [FlavorSpec.load(workspace, flavor) for flavor in discover_flavors(workspace)]
    for spec in specs:
        if spec.name in naming.RESERVED_NAMES:
            raise_reserved(workspace, spec.name)
    return specs


def raise_reserved(workspace: Workspace, name: str) -> None:
    from cli.errors import UserError

    raise UserError(
        f"'{name}' is reserved: it names a build step or target of `cli build` ({', '.join(naming.RESERVED_NAMES)})",
        path=workspace.root / "flavors" / name,
        fix="rename the flavor folder and its pixi environment",
    )


def expected_files(workspace: Workspace, specs: list[FlavorSpec] | None = None) -> list[GeneratedFile]:
    specs = flavor_specs(workspace) if specs is None else specs
    files = []
    for spec in specs:
        source = (spec.folder / "metadata.yml").relative_to(workspace.root).as_posix()
        files.append(
            GeneratedFile(spec.folder / naming.RUN_SCRIPT, render_run_script(spec.metadata, source), EXECUTABLE)
        )
    compose = render_compose(plan_builds(workspace, specs), "flavors/*/metadata.yml and runtime.yml")
    files.append(GeneratedFile(workspace.root / naming.COMPOSE_FILE, compose))
    return files


def _problem(file: GeneratedFile) -> str | None:
    if not file.path.is_file():
        return "missing"
    if file.path.read_text(encoding="utf-8") != file.text:
        return "differs from what metadata.yml gives"
    if file.mode == EXECUTABLE and not file.path.stat().st_mode & 0o111:
        return "is not executable"
    return None


def stale_generated(workspace: Workspace, specs: list[FlavorSpec] | None = None) -> list[str]:
    """One message per generated file that is missing, edited or out of date; empty when all are fresh."""
    messages = []
    for file in expected_files(workspace, specs):
        problem = _problem(file)
        if problem:
            messages.append(f"{file.path}: {problem} (run `python -m cli generate`)")
    return messages


def write_generated(workspace: Workspace, specs: list[FlavorSpec] | None = None) -> list[Path]:
    """Write what changed (only that), returning the paths written."""
    written = []
    for file in expected_files(workspace, specs):
        if _problem(file) is None:
            continue
        atomic_write_text(file.path, file.text, mode=file.mode)
        log.info("wrote %s", file.path)
        written.append(file.path)
    return written
