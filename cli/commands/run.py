"""`run`: one job on local folders with a flavor's environment, through the same runner as the image."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import UserError
from cli.local_run import LocalRun, run_locally
from cli.lockengine.manifest import PyprojectManifest, Workspace, find_manifest
from cli.options import ManifestPathOption, workspace_from


class OverlayPolicy(StrEnum):
    protect = "protect"
    override = "override"


def run_command(
    flavor: Annotated[str, typer.Argument(help="The flavor whose environment runs the job.")],
    output_folder: Annotated[
        Path, typer.Option("--output", "-o", help="Where output_1..4, their zips (and logs/) go; must be empty.")
    ],
    input_folder: Annotated[
        Path | None,
        typer.Option("--input", "-i", help="The job's input folder: the script and data, or input_1/ … input_5/."),
    ] = None,
    ports: Annotated[
        list[str] | None,
        typer.Option(
            "--port",
            help="KEY=FILE (or KEY=VALUE): stage this input port as oSPARC does (repeat per port; instead of --input).",
        ),
    ] = None,
    staging: Annotated[
        Path | None, typer.Option("--staging", help="Stage the --port inputs into this folder and keep it.")
    ] = None,
    log_folder: Annotated[
        Path | None, typer.Option("--logs", help="LOG_FOLDER: the runner's record (default: OUTPUT/logs).")
    ] = None,
    script_args: Annotated[list[str] | None, typer.Argument(help="Arguments for the script (after --).")] = None,
    python: Annotated[
        Path | None,
        typer.Option("--python", help="The flavor environment's Python (default: .pixi/envs/FLAVOR, .envs/FLAVOR)."),
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
    clean_outputs: Annotated[
        bool, typer.Option("--clean-outputs", help="Remove what an earlier run left in --output (else refused).")
    ] = False,
) -> None:
    """Run a job locally: no Docker, no root; the exit status is the script's (or the runner's on setup errors)."""
    request = LocalRun(
        flavor=flavor,
        output_folder=output_folder,
        input_folder=input_folder,
        ports=list(ports or []),
        staging=staging,
        log_folder=log_folder,
        python=python,
        prefix=prefix,
        entrypoint=entrypoint,
        timeout=timeout,
        overlay_policy=overlay_policy.value if overlay_policy else None,
        cache_dir=cache_dir,
        clean_outputs=clean_outputs,
        script_args=list(script_args or []),
    )
    raise typer.Exit(run_locally(_workspace(manifest_path, python), request))


def _workspace(manifest_path: Path | None, python: Path | None) -> Workspace | None:
    """The workspace, or None when there is none here: `run_locally` says when that is fine, and how to fix it."""
    if manifest_path is None:
        try:
            find_manifest(None)
        except PyprojectManifest:
            if python is None:
                raise
            return None  # an explicit --python needs no workspace
        except UserError:
            return None
    return workspace_from(manifest_path)


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the application."""
    app.command("run")(run_command)
