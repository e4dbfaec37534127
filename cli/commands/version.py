"""`version show` and `version bump <flavor> major|minor|patch`: each flavor versions on its own."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.flavors import get_flavor
from cli.images.generated import flavor_specs, write_generated
from cli.images.versions import Part, bump
from cli.options import JsonOption, ManifestPathOption, workspace_from

version_app = typer.Typer(
    help="Show or bump the flavors' versions (in flavors/<name>/metadata.yml).", no_args_is_help=True
)


@version_app.command("show")
def show(manifest_path: ManifestPathOption = None, as_json: JsonOption = False) -> None:
    """Print each flavor's version and image."""
    specs = flavor_specs(workspace_from(manifest_path))
    if as_json:
        document = {s.name: {"version": s.metadata.version, "image": s.metadata.image} for s in specs}
        typer.echo(json.dumps(document, indent=2))
        return
    for spec in specs:
        typer.echo(f"{spec.name}\t{spec.metadata.version}\t{spec.metadata.image}")


@version_app.command("bump")
def bump_command(
    flavor: Annotated[str, typer.Argument(help="The flavor whose version changes.")],
    part: Annotated[Part, typer.Argument(help="Which part of X.Y.Z to increase.")],
    manifest_path: ManifestPathOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bump one flavor's version in its metadata.yml and regenerate what derives from it."""
    workspace = workspace_from(manifest_path)
    flavor_specs(workspace)  # every metadata.yml must be valid before anything is written
    target = get_flavor(workspace, flavor)
    old, new = bump(target.metadata_path, part)
    written = write_generated(workspace)
    if as_json:
        document = {"flavor": target.name, "old": old, "new": new, "written": [str(p) for p in written]}
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(f"{target.name}: {old} -> {new}")
    for path in written:
        typer.echo(f"wrote {path.relative_to(workspace.root)}")


def register(app: typer.Typer) -> None:
    app.add_typer(version_app, name="version")
