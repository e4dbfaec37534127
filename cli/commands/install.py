"""`install`: an environment from pixi.lock into a prefix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.lockengine.install import InstallRequest, install_environment
from cli.options import JsonOption, ManifestPathOption, workspace_from


def install_command(
    flavor: Annotated[str, typer.Argument(help="The flavor (pixi environment) to install.")],
    prefix: Annotated[Path, typer.Option("--prefix", help="Target folder of the environment.")],
    manifest_path: ManifestPathOption = None,
    platform: Annotated[
        str | None, typer.Option("--platform", help="Lock platform to install (default: this machine's).")
    ] = None,
    frozen: Annotated[
        bool, typer.Option("--frozen", help="Install the lock as it is, even if pixi.toml changed.")
    ] = False,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Package cache (default: RATTLER_CACHE_DIR).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Install exactly what pixi.lock holds for FLAVOR (sha256-verified, never re-solved)."""
    workspace = workspace_from(manifest_path)
    result = install_environment(
        workspace,
        InstallRequest(
            environment=flavor,
            prefix=prefix.absolute(),
            platform=platform,
            frozen=frozen,
            cache_dir=cache_dir,
            show_progress=not quiet and not as_json,
        ),
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "prefix": str(result.prefix),
                    "platform": result.platform,
                    "packages": [
                        {
                            "name": r.name.normalized,
                            "version": str(r.version),
                            "build": str(r.build),
                            "sha256": r.sha256.hex() if r.sha256 else None,
                        }
                        for r in result.packages
                    ],
                },
                indent=2,
            )
        )
    else:
        typer.echo(f"installed {len(result.packages)} packages of '{flavor}' ({result.platform}) into {result.prefix}")


def register(app: typer.Typer) -> None:
    app.command("install")(install_command)
