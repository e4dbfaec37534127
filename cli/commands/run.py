"""`run`: one job on local folders with a flavor's environment, through the same runner as the image."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.local_run import LocalRun, run_locally
from cli.options import ManifestPathOption, workspace_from


class OverlayPolicy(StrEnum):
    protect = "protect"
    override = "override"


def run_command(
    flavor: Annotated[str, typer.Argument(help="The flavor whose environment runs the job.")],
    input_folder: Annotated[
        Path, typer.Option("--input", "-i", help="The job's input folder (the script, or input_1/ … input_5/).")
    ],
    output_folder: Annotated[Path, typer.Option("--output", "-o", help="Where output_1..4, their zips and logs go.")],
    script_args: Annotated[list[str] | None, typer.Argument(help="Arguments for the script (after --).")] = None,
    python: Annotated[
        Path | None, typer.Option("--python", help="The flavor environment's Python (default: the current one).")
    ] = None,
    prefix: Annotated[
        Path | None, typer.Option("--prefix", help="A flavor environment made by `cli install FLAVOR --prefix DIR`.")
    ] = None,
    manifest_path: ManifestPathOption = None,
    entrypoint: Annotated[
        str | None, typer.Option("--entrypoint", help="Script to run, relative to the code (default: discovered).")
    ] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Stop the script after SECONDS.")] = None,
    overlay_policy: Annotated[
        OverlayPolicy | None,
        typer.Option("--overlay-policy", help="protect (default): refuse requirements that replace the base."),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Overlay cache (default: RUNNER_CACHE_DIR or ~/.cache).")
    ] = None,
) -> None:
    """Run a job locally: no Docker, no root; the exit status is the script's (or the runner's on setup errors)."""
    workspace = workspace_from(manifest_path)
    request = LocalRun(
        flavor=flavor,
        input_folder=input_folder,
        output_folder=output_folder,
        python=python,
        prefix=prefix,
        entrypoint=entrypoint,
        timeout=timeout,
        overlay_policy=overlay_policy.value if overlay_policy else None,
        cache_dir=cache_dir,
        script_args=list(script_args or []),
    )
    raise typer.Exit(run_locally(workspace, request))


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the application."""
    app.command("run")(run_command)
