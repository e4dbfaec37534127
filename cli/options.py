"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.lockengine.manifest import Workspace, load_workspace

ManifestPathOption = Annotated[
    Path | None,
    typer.Option(
        "--manifest-path",
        help="The workspace folder (holding pixi.toml) or the pixi.toml itself; default: search upwards from here.",
    ),
]

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def workspace_from(manifest_path: Path | None) -> Workspace:
    return load_workspace(manifest_path)
