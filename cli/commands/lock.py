"""`lock`: solve pixi.toml into pixi.lock; `lock --check` judges the lock without solving."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.options import JsonOption, ManifestPathOption, workspace_from


class Engine(StrEnum):
    rattler = "rattler"
    pixi = "pixi"


def lock_command(
    manifest_path: ManifestPathOption = None,
    environment: Annotated[
        list[str] | None, typer.Option("--environment", "-e", help="Lock only this environment (repeatable).")
    ] = None,
    platform: Annotated[
        list[str] | None, typer.Option("--platform", "-p", help="Lock only this platform (repeatable).")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Judge pixi.lock against pixi.toml as pixi's --locked does (no solve, no network): "
            "exit 0 fresh, 1 stale, 2 cannot check.",
        ),
    ] = False,
    mirror: Annotated[
        list[str] | None,
        typer.Option(
            "--mirror", help="NAME=URL: read channel NAME from URL, record NAME's canonical URL (repeatable)."
        ),
    ] = None,
    update: Annotated[bool, typer.Option("--update", help="Ignore the versions already locked.")] = False,
    engine: Annotated[
        Engine, typer.Option("--engine", help="rattler (built in) or pixi (the pixi executable).")
    ] = Engine.rattler,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Repodata cache for remote channels.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Resolve every environment of pixi.toml for every platform into pixi.lock."""
    if check and engine is Engine.rattler:
        raise typer.Exit(_check(manifest_path, environment, as_json))
    workspace = workspace_from(manifest_path)
    if engine is Engine.pixi:
        from cli.lockengine.locking import lock_with_pixi

        raise typer.Exit(lock_with_pixi(workspace, check))
    from rich.console import Console

    from cli.lockengine.channels import parse_mirrors
    from cli.lockengine.locking import LockRequest, lock_workspace, write_result

    mirrors = parse_mirrors(mirror)  # bad input is one line, before any display
    console = Console(stderr=True)
    with console.status("solving", spinner="dots") as status:
        request = LockRequest(
            environments=tuple(environment or ()),
            platforms=tuple(platform or ()),
            mirrors=mirrors,
            update=update,
            cache_dir=cache_dir,
            on_solve=lambda env, plat: status.update(f"solving {env} [{plat}]"),
        )
        result = lock_workspace(workspace, request)
    write_result(result)
    if as_json:
        typer.echo(
            json.dumps({"lock": str(result.path), "changed": result.changed, "environments": result.solved}, indent=2)
        )
        return
    summary = ", ".join(
        f"{env} ({', '.join(f'{p}: {n}' for p, n in plats.items())})" for env, plats in result.solved.items()
    )
    typer.echo(f"{'wrote' if result.changed else 'unchanged'} {result.path}: {summary}")


def _check(manifest_path: Path | None, environments: list[str] | None, as_json: bool) -> int:
    """Satisfiability only: 0 fresh, 1 stale, 2 cannot check (one line saying why)."""
    from cli.check_report import CANNOT_CHECK, EXIT_CODES, FRESH, STALE, check_json
    from cli.lockengine.freshness import CannotCheck, lock_mismatches
    from cli.lockengine.manifest import PyprojectManifest

    try:
        workspace = workspace_from(manifest_path)
        for name in environments or []:
            workspace.resolve(name)
        problems = lock_mismatches(workspace, None, environments or None)
    except (CannotCheck, PyprojectManifest) as error:
        reason = error.reason if isinstance(error, CannotCheck) else error.message
        if as_json:
            typer.echo(check_json("lock", [], reason))
        else:
            typer.echo(f"cannot check: {reason}", err=True)
        return EXIT_CODES[CANNOT_CHECK]
    lock_path = workspace.lock_path
    if as_json:
        typer.echo(check_json("lock", [str(p) for p in problems]))
    elif problems:
        typer.echo(f"{lock_path}: out of date")
        for problem in problems:
            typer.echo(f"  {problem}")
    else:
        typer.echo(f"{lock_path}: up to date")
    return EXIT_CODES[STALE if problems else FRESH]


def register(app: typer.Typer) -> None:
    app.command("lock")(lock_command)
