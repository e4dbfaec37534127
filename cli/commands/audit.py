"""`audit`: prove what is in a flavor, that it matches its lock, and what changed.

Every subcommand exits 0 when clean, 1 with findings (each naming the file or package at
fault) and 2 on usage or input errors; `--json` prints the full result for machines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.audit import reporting
from cli.options import JsonOption, ManifestPathOption, workspace_from

audit_app = typer.Typer(
    name="audit",
    help="Audit the lock, an installed prefix, lock changes, the SBOM, CUDA needs and licences.",
    no_args_is_help=True,
)

FlavorArgument = Annotated[str, typer.Argument(help="The flavor (pixi environment).")]
PlatformsOption = Annotated[
    list[str] | None, typer.Option("--platform", "-p", help="Lock platform (repeatable; default: all of the flavor's).")
]


def _exit(findings: int) -> None:
    if findings:
        raise typer.Exit(1)


@audit_app.command("lock")
def lock_command(
    manifest_path: ManifestPathOption = None,
    environment: Annotated[
        list[str] | None,
        typer.Option("--environment", "-e", help="Check only this environment against pixi.toml (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """pixi.lock satisfies pixi.toml; envs/ exports and generated files match it."""
    from cli.audit.lock import audit_lock  # each subcommand imports only what it uses

    workspace = workspace_from(manifest_path)
    result = audit_lock(workspace, environment or None)
    if as_json:
        typer.echo(reporting.to_json(result.as_dict()))
    else:
        reporting.print_lock_audit(reporting.console(), result)
    _exit(len(result.findings()))


@audit_app.command("prefix")
def prefix_command(
    flavor: FlavorArgument,
    prefix: Annotated[Path, typer.Argument(help="The installed environment (e.g. /opt/conda/envs/<flavor>).")],
    manifest_path: ManifestPathOption = None,
    overlay: Annotated[
        Path | None, typer.Option("--overlay", help="A runner overlay venv over the prefix: list and check it.")
    ] = None,
    platform: Annotated[
        str | None, typer.Option("--platform", "-p", help="Lock platform of the prefix (default: read from it).")
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option("--ignore", help="Glob of prefix paths not to report as unexpected.")
    ] = None,
    no_files: Annotated[bool, typer.Option("--no-files", help="Compare packages only; hash no file.")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Hashing threads.")] = None,
    as_json: JsonOption = False,
) -> None:
    """An installed environment against the lock: packages, then every file against its package's hashes."""
    from cli.audit.prefix import audit_prefix

    workspace = workspace_from(manifest_path)
    result = audit_prefix(
        workspace,
        flavor,
        prefix.absolute(),
        platform=platform,
        overlay=overlay.absolute() if overlay else None,
        ignore=ignore or (),
        check_files_=not no_files,
        workers=workers,
    )
    if as_json:
        typer.echo(reporting.to_json(result.as_dict()))
    else:
        reporting.print_prefix_audit(reporting.console(), result)
    _exit(len(result.findings()))


@audit_app.command("diff")
def diff_command(
    old: Annotated[Path, typer.Argument(help="The old lock: pixi.lock (v4-v7), conda-lock.yml or @EXPLICIT.")],
    new: Annotated[Path, typer.Argument(help="The new lock, in any of those formats.")],
    environment: Annotated[
        list[str] | None, typer.Option("--environment", "-e", help="Only this environment (repeatable).")
    ] = None,
    platform: PlatformsOption = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print markdown, e.g. for a pull request.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Added, removed, upgraded, downgraded and rebuilt packages per environment and platform (exit 1 if any)."""
    from cli.audit.diff import diff_files

    result = diff_files(old, new, environment or None, platform or None)
    if as_json:
        typer.echo(reporting.to_json(result.as_dict()))
    elif markdown:
        typer.echo(reporting.diff_markdown(result), nl=False)
    else:
        reporting.print_diff(reporting.console(), result)
    _exit(int(result.changed))


@audit_app.command("sbom")
def sbom_command(
    flavor: FlavorArgument,
    manifest_path: ManifestPathOption = None,
    platform: Annotated[
        str | None, typer.Option("--platform", "-p", help="Lock platform (default: linux-64 or the only one).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the SBOM here, not to stdout.")] = None,
    as_json: JsonOption = False,
) -> None:
    """A CycloneDX 1.6 JSON SBOM of FLAVOR from pixi.lock (purls, hashes, licences, dependencies)."""
    from cli.audit.sbom import build_bom, render_bom, write_bom

    workspace = workspace_from(manifest_path)
    text = render_bom(build_bom(workspace, flavor, platform))
    if output is None:
        typer.echo(text)
        return
    write_bom(text, output)
    components = len(json.loads(text).get("components", []))
    if as_json:
        typer.echo(reporting.to_json({"sbom": str(output), "components": components}))
    else:
        typer.echo(f"wrote {output}: CycloneDX 1.6, {components} components")


@audit_app.command("cuda")
def cuda_command(
    flavor: FlavorArgument,
    driver: Annotated[
        str | None, typer.Option("--driver", help="NVIDIA driver version to check, e.g. 550.54.14.")
    ] = None,
    manifest_path: ManifestPathOption = None,
    platform: PlatformsOption = None,
    as_json: JsonOption = False,
) -> None:
    """The CUDA needs of FLAVOR from its lock, whether DRIVER runs it, and no CPU variant in a CUDA lock."""
    from cli.audit.cuda import audit_cuda

    workspace = workspace_from(manifest_path)
    result = audit_cuda(workspace, flavor, driver, platform or None)
    if as_json:
        typer.echo(reporting.to_json(result.as_dict()))
    else:
        reporting.print_cuda_audit(reporting.console(), result)
    _exit(len(result.findings()))


@audit_app.command("licenses")
def licenses_command(
    flavor: FlavorArgument,
    manifest_path: ManifestPathOption = None,
    platform: PlatformsOption = None,
    deny: Annotated[
        list[str] | None,
        typer.Option("--deny", help="SPDX id glob (e.g. 'AGPL-*') or kind (e.g. copyleft) to fail on (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The licence inventory of FLAVOR, grouped by licence and kind."""
    from cli.audit.licenses import audit_licences

    workspace = workspace_from(manifest_path)
    result = audit_licences(workspace, flavor, platform or None, deny or None)
    if as_json:
        typer.echo(reporting.to_json(result.as_dict()))
    else:
        reporting.print_licence_audit(reporting.console(), result)
    _exit(len(result.findings()))


def register(app: typer.Typer) -> None:
    """Add the `audit` command group to the application."""
    app.add_typer(audit_app, name="audit")
