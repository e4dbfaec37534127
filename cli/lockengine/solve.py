"""One environment, one platform → the records that satisfy it (py-rattler's solver)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import rattler
from rattler import Channel, ChannelPriority, Gateway, MatchSpec, RepoDataRecord, SparseRepoData, Subdir
from rattler.exceptions import GatewayError, InvalidMatchSpecError, SolverError
from rattler.networking import Client, MirrorMiddleware

from cli.errors import SolveError, UserError
from cli.lockengine.channels import ChannelSource, local_repodata
from cli.lockengine.manifest import CondaSpec, PlatformSpec, ResolvedEnvironment, Workspace
from cli.lockengine.virtual_packages import solver_virtual_packages

log = logging.getLogger(__name__)


STRATEGIES = {"highest": "highest", "lowest-version": "lowest", "lowest-version-direct": "lowest-direct"}


def match_specs(specs: dict[str, CondaSpec] | list[tuple[str, CondaSpec]], manifest: Path) -> list[MatchSpec]:
    result = []
    pairs = specs.items() if isinstance(specs, dict) else specs
    for name, spec in sorted(pairs, key=lambda pair: (pair[0], pair[1].match_spec(pair[0]))):
        text = spec.match_spec(name)
        try:
            result.append(MatchSpec(text.strip(), strict=False))
        except (InvalidMatchSpecError, ValueError) as error:
            raise UserError(
                f"dependency {name} = {spec!r} is not a valid spec: {error}",
                path=manifest,
                fix='use a conda version spec such as ">=2.1,<3" or { version = "*", build = "cuda*" }',
            ) from error
    return result


def _sources(
    sources: list[ChannelSource], subdir: str, cache_dir: Path | None
) -> tuple[list[Channel | SparseRepoData], Gateway | None]:
    subdirs = [subdir, "noarch"] if subdir != "noarch" else ["noarch"]
    resolved: list[Channel | SparseRepoData] = []
    remote_mirrors: dict[str, list[str]] = {}
    needs_gateway = False
    for source in sources:
        if source.local_path is not None:
            resolved.extend(local_repodata(source, subdirs))
        else:
            needs_gateway = True
            resolved.append(Channel(source.canonical))
            if source.location != source.canonical:
                remote_mirrors[source.canonical.rstrip("/")] = [source.location.rstrip("/")]
    gateway = None
    if needs_gateway:
        client = Client([MirrorMiddleware(remote_mirrors)]) if remote_mirrors else None
        gateway = Gateway(cache_dir=cache_dir, client=client, show_progress=False)
    return resolved, gateway


def solve_platform(
    workspace: Workspace,
    environment: ResolvedEnvironment,
    platform: PlatformSpec,
    sources: list[ChannelSource],
    locked: list[RepoDataRecord] | None = None,
    cache_dir: Path | None = None,
    specs_text: dict[str, CondaSpec] | list[tuple[str, CondaSpec]] | None = None,
) -> list[RepoDataRecord]:
    """`specs_text` replaces the environment's own specs (a solve group solves the union of its members')."""
    wanted = specs_text if specs_text is not None else environment.specs_by_platform.get(platform.name, {})
    specs = match_specs(wanted, workspace.manifest_path)
    if not specs:
        return []
    resolved, gateway = _sources(sources, platform.subdir, cache_dir)
    log.info("solving %s for %s (%d specs)", environment.name, platform.name, len(specs))
    try:
        records = asyncio.run(
            rattler.solve(
                resolved,
                specs,
                gateway=gateway,
                platforms=[Subdir(platform.subdir), Subdir("noarch")],
                locked_packages=locked or None,
                virtual_packages=solver_virtual_packages(platform.virtual_packages),
                channel_priority=ChannelPriority.Strict
                if environment.channel_priority == "strict"
                else ChannelPriority.Disabled,
                strategy=STRATEGIES.get(environment.solve_strategy, "highest"),  # type: ignore[arg-type]
                exclude_newer=environment.exclude_newer,
            )
        )
    except SolverError as error:
        raise SolveError(environment.name, platform.name, str(error), path=workspace.manifest_path) from error
    except GatewayError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        channels = ", ".join(source.location for source in sources)
        raise UserError(
            f"cannot read repodata of {channels} for environment '{environment.name}': {reason}",
            path=workspace.manifest_path,
            fix="check the network, or solve from a local copy with --mirror NAME=URL",
        ) from error
    return sorted(records, key=lambda r: (str(r.name.normalized), r.url))
