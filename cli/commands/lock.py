"""`lock`: solve pixi.toml into pixi.lock."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.lockengine.channels import parse_mirrors
from cli.lockengine.locking import LockRequest, lock_with_pixi, lock_workspace, write_result
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
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if the lock would change; write nothing.")] = False,
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
    workspace = workspace_from(manifest_path)
    if engine is Engine.pixi:
        raise typer.Exit(lock_with_pixi(workspace, check))
    console = Console(stderr=True)
    with console.status("solving", spinner="dots") as status:
        request = LockRequest(
            environments=tuple(environment or ()),
            platforms=tuple(platform or ()),
            mirrors=parse_mirrors(mirror),
            update=update,
            cache_dir=cache_dir,
            on_solve=lambda env, plat: status.update(f"solving {env} [{plat}]"),
        )
        result = lock_workspace(workspace, request)
    if not check:
        write_result(result)
    if as_json:
        typer.echo(
            json.dumps(
                {"lock": str(result.path), "changed": result.changed, "check": check, "environments": result.solved},
                indent=2,
            )
        )
    elif check:
        typer.echo(f"{result.path}: {'out of date' if result.changed else 'up to date'}")
    else:
        summary = ", ".join(
            f"{env} ({', '.join(f'{p}: {n}' for p, n in plats.items())})" for env, plats in result.solved.items()
        )
        typer.echo(f"{'wrote' if result.changed else 'unchanged'} {result.path}: {summary}")
    if check and result.changed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("lock")(lock_command)
