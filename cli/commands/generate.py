"""`generate`: write the run scripts and docker-compose.yml from flavors/<name>/metadata.yml."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.check_report import report_check, report_written
from cli.images.generated import stale_generated, write_generated
from cli.options import JsonOption, ManifestPathOption, workspace_from


def generate_command(
    manifest_path: ManifestPathOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if a generated file is missing or stale; write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write flavors/<name>/service.cli/run and docker-compose.yml from each flavor's metadata.yml."""
    workspace = workspace_from(manifest_path)
    if check:
        report_check("generate", stale_generated(workspace), as_json, "generated files are up to date")
    report_written(write_generated(workspace), workspace.root, as_json, "generated files are up to date")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
