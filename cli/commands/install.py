"""`install`: an environment from pixi.lock into a prefix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.flavors import default_prefix
from cli.lockengine.channels import parse_mirrors
from cli.lockengine.install import DEFAULT_LINK, InstallRequest, LinkMode, install_environment
from cli.options import JsonOption, ManifestPathOption, workspace_from

MirrorOption = Annotated[
    list[str] | None,
    typer.Option(
        "--mirror",
        help="NAME=URL: fetch channel NAME's packages from URL, a copy of it (repeatable; as `lock --mirror`).",
    ),
]


def install_command(
    flavor: Annotated[str, typer.Argument(help="The flavor (pixi environment) to install.")],
    prefix: Annotated[
        Path | None, typer.Option("--prefix", help="Target folder of the environment (default: .envs/FLAVOR).")
    ] = None,
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
    mirror: MirrorOption = None,
    link: Annotated[
        LinkMode,
        typer.Option(
            "--link",
            help="reflink: copy-on-write clone, or a copy where the file system cannot; copy: always a copy; "
            "hardlink: share the cache's files (fast, but an edit in the prefix changes the cache).",
        ),
    ] = DEFAULT_LINK,
    reinstall: Annotated[
        bool,
        typer.Option("--reinstall", help="Link every package again, also those already in the prefix (repairs it)."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Install exactly what pixi.lock holds for FLAVOR (sha256-verified, never re-solved)."""
    workspace = workspace_from(manifest_path)
    mirrors = parse_mirrors(mirror)
    target = (prefix or default_prefix(workspace, flavor)).absolute()
    result = install_environment(
        workspace,
        InstallRequest(
            environment=flavor,
            prefix=target,
            platform=platform,
            frozen=frozen,
            cache_dir=cache_dir.absolute() if cache_dir else None,
            show_progress=not quiet and not as_json,
            link=link,
            mirrors=mirrors,
            reinstall=reinstall,
        ),
    )
    report = result.report
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "prefix": str(result.prefix),
                    "platform": result.platform,
                    **report.as_dict(),
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
        return
    typer.echo(
        f"installed {len(result.packages)} packages of '{flavor}' ({result.platform}) into {result.prefix} "
        f"({report.link.value}, {len(report.downloaded)} downloaded, {len(report.repaired)} repaired, "
        f"{report.seconds:.1f} s)"
    )


def register(app: typer.Typer) -> None:
    app.command("install")(install_command)
