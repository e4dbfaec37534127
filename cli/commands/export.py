"""`export`: derive envs/<flavor>/ (conda-lock.yml, @EXPLICIT files) and envs/_shared/ from pixi.lock."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.options import JsonOption, ManifestPathOption, workspace_from


def export_command(
    flavor: Annotated[list[str] | None, typer.Argument(help="Flavors to export (default: all).")] = None,
    manifest_path: ManifestPathOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if an export is missing or stale; write nothing.")
    ] = False,
    ignore_pypi_errors: Annotated[
        bool,
        typer.Option(
            "--ignore-pypi-errors",
            help="Leave PyPI packages out of the formats that have no place for them (@EXPLICIT), "
            "as pixi's export does.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write envs/<flavor>/conda-lock.yml, envs/<flavor>/<subdir>.explicit and the shared stage's split
    (envs/_shared/, <subdir>.own.explicit) from pixi.lock."""
    from cli.check_report import report_check, report_written
    from cli.flavors import discover_flavors, get_flavor
    from cli.lockengine.export import stale_exports, write_exports

    workspace = workspace_from(manifest_path)
    flavors = [get_flavor(workspace, name) for name in flavor] if flavor else discover_flavors(workspace)
    if check:
        report_check("export", stale_exports(workspace), as_json, "exports are up to date")
    report_written(
        write_exports(workspace, flavors, ignore_pypi_errors), workspace.root, as_json, "exports are up to date"
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
