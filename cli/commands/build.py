"""`build`: the common image, the shared stage, then flavor images (`simcore/services/comp/<service>:<version>`)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import UserError
from cli.flavors import get_flavor
from cli.images import naming
from cli.images.dockerfiles import render, rendered, write_rendered
from cli.images.execute import (
    BUILDX_HINT,
    LEGACY_BUILDER_ENV,
    Job,
    docker_has_buildx,
    log_path_for,
    require_engine,
    run_jobs,
)
from cli.images.freshness import check_fresh
from cli.images.generated import flavor_specs
from cli.images.locked_tools import check_locked_tools
from cli.images.plan import BuildStep, Engine, FlavorSpec, as_text, build_command, build_facts, plan_builds
from cli.images.plan import push_commands as plan_push_commands
from cli.lockengine.channels import parse_mirrors
from cli.lockengine.manifest import Workspace
from cli.options import JsonOption, ManifestPathOption, workspace_from

log = logging.getLogger(__name__)


def select_flavors(workspace: Workspace, target: str) -> list[FlavorSpec]:
    specs = flavor_specs(workspace)
    if target == naming.COMMON:
        return []
    if target == naming.ALL:
        return specs
    name = get_flavor(workspace, target).name
    return [spec for spec in specs if spec.name == name]


def check_registry(registry: str | None) -> str | None:
    if registry is None:
        return None
    cleaned = registry.strip().rstrip("/")
    if not cleaned or "://" in cleaned or " " in cleaned:
        raise UserError(
            f"--push {registry!r} is not a registry host", fix="give host[:port][/path], e.g. registry.example.org:5000"
        )
    return cleaned


def step_json(step: BuildStep, command: list[str], root: Path) -> dict[str, object]:
    return {
        "name": step.name,
        "image": step.image,
        "tags": list(step.tags),
        "dockerfile": step.dockerfile.as_posix(),
        "from": step.parent,  # the step whose image this one is built FROM
        # What the build writes at `dockerfile` (a dry run writes nothing); null when it is the committed one.
        "rendered_dockerfile": render(step, root) if step.rendered_from is not None else None,
        "build_args": step.build_args,
        "labels": step.labels,
        "env": step.env,
        "command": command,
    }


def build_images(
    target: Annotated[str, typer.Argument(metavar="FLAVOR|all|common", help="A flavor, all flavors, or common alone.")],
    manifest_path: ManifestPathOption = None,
    engine: Annotated[Engine, typer.Option("--engine", help="The container engine to call.")] = Engine.docker,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print each engine command, run none.")] = False,
    push: Annotated[
        str | None, typer.Option("--push", metavar="REGISTRY", help="Also tag the flavor images for REGISTRY and push.")
    ] = None,
    base_image: Annotated[
        str, typer.Option("--base-image", help="BASE_IMAGE of the common image.")
    ] = naming.DEFAULT_BASE_IMAGE,
    log_dir: Annotated[
        Path | None, typer.Option("--log-dir", help="Where to save the build log (default: build/logs/).")
    ] = None,
    base: Annotated[
        Path | None, typer.Option("--base", help="--engine oci: the base, an OCI archive or a rootfs tar.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="--engine oci: the OCI image layout tar to write.")
    ] = None,
    compression: Annotated[
        str,
        typer.Option(
            "--compression",
            metavar="zstd|gzip|none",
            help="--engine oci: layer compression; gzip for engines older than Docker 23 or containerd 1.5.",
        ),
    ] = "zstd",
    mirror: Annotated[
        list[str] | None,
        typer.Option(
            "--mirror",
            help="--engine oci: NAME=URL, fetch channel NAME's packages from URL (repeatable; as `lock --mirror`).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Build the common image, the shared stage, then the flavor(s); refuses while pixi.lock, the exports or
    generated files are stale."""
    workspace = workspace_from(manifest_path)
    mirrors = parse_mirrors(mirror)
    if engine is Engine.oci:
        build_oci(workspace, target, base, output, compression, as_json, mirrors)
        return
    if mirrors:
        raise UserError(
            "--mirror applies to --engine oci only", fix="the Docker build fetches its packages inside the build"
        )
    registry = check_registry(push)
    specs = select_flavors(workspace, target)
    check_fresh(workspace, specs)
    for spec in specs:
        check_locked_tools(workspace, spec.name)
    facts = build_facts(workspace, specs)
    planned = plan_builds(workspace, specs, base_image=base_image, registry=registry, facts=facts)
    steps = [rendered(step) for step in planned]
    buildkit = engine is not Engine.docker or dry_run or docker_uses_buildkit(engine)
    builds = [build_command(step, engine, workspace.root, buildkit=buildkit) for step in steps]
    pushes = plan_push_commands(steps, engine)
    if dry_run:
        if as_json:
            document = {
                "steps": [step_json(s, c, workspace.root) for s, c in zip(steps, builds, strict=True)],
                "push": pushes,
            }
            typer.echo(json.dumps(document, indent=2))
        else:
            for command in builds + pushes:
                typer.echo(as_text(command))
        return
    require_engine(engine.value)
    for step in steps:
        write_rendered(step, workspace.root)
    env = None if buildkit else LEGACY_BUILDER_ENV
    jobs = [Job(f"build {step.name}", command, env) for step, command in zip(steps, builds, strict=True)]
    jobs += [Job(f"push {command[-1]}", command) for command in pushes]
    log_path = log_path_for(workspace.root, target, log_dir)
    run_jobs(jobs, log_path, workspace.root)
    if as_json:
        typer.echo(
            json.dumps(
                {"images": [s.image for s in steps], "pushed": [c[-1] for c in pushes], "log": str(log_path)}, indent=2
            )
        )
    else:
        for step in steps:
            typer.echo(f"built {step.image}")
        for command in pushes:
            typer.echo(f"pushed {command[-1]}")
        typer.echo(f"log: {log_path}")


def docker_uses_buildkit(engine: Engine) -> bool:
    """True when docker has buildx; else say once that the legacy builder is used, and how to get BuildKit."""
    if shutil.which(engine.value) is None or docker_has_buildx(engine.value):
        return True
    log.warning("docker has no buildx: building with the legacy builder (%s)", BUILDX_HINT)
    return False


def build_oci(
    workspace: Workspace,
    target: str,
    base: Path | None,
    output: Path | None,
    compression: str,
    as_json: bool,
    mirrors: dict[str, str] | None = None,
) -> None:
    """The daemonless engine: one flavor's image assembled from the lock, byte-reproducible."""
    from cli.oci import Compression, build_oci_image

    choices = [c.value for c in Compression]
    if compression not in choices:
        raise UserError(f"--compression {compression!r} is not known", fix=f"use one of {', '.join(choices)}")

    if target in (naming.COMMON, naming.ALL):
        raise UserError(f"--engine oci builds one flavor image, not '{target}'", fix="name a flavor, e.g. pytorch")
    if base is None or output is None:
        raise UserError("--engine oci needs --base BASE.tar and -o IMAGE.tar", fix="give both options")
    result = build_oci_image(
        workspace,
        get_flavor(workspace, target).name,
        base,
        output,
        compression=Compression(compression),
        mirrors=mirrors,
    )
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
    else:
        for line in result.summary():
            typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("build")(build_images)
