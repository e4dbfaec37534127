"""The lock engine: every environment and platform of pixi.toml solved into one pixi.lock.

Same manifest, same channels, same existing lock → byte-identical output. Locked
records of an existing lock are passed to the solver as preferences, as pixi does,
so re-locking without a manifest change changes nothing.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rattler import LockFile, RepoDataRecord

from cli.cuda import is_cpu_variant
from cli.errors import UserError
from cli.flavors import check_flavor_folders
from cli.lockengine.channels import channel_sources
from cli.lockengine.lockfile import SolvedEnvironment, environment_records, read_lock_file, render_lock, write_lock
from cli.lockengine.manifest import ResolvedEnvironment, Workspace
from cli.lockengine.solve import solve_platform
from cli.lockengine.virtual_packages import virtual_package_strings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockRequest:
    environments: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    mirrors: dict[str, str] = field(default_factory=dict)
    update: bool = False
    cache_dir: Path | None = None
    # called before each solve with (environment, platform), e.g. to drive a progress display
    on_solve: Callable[[str, str], None] | None = None


@dataclass(frozen=True)
class LockResult:
    path: Path
    content: bytes
    changed: bool
    solved: dict[str, dict[str, int]]


def _existing_lock(workspace: Workspace) -> LockFile | None:
    """The lock to keep versions from; an unreadable one is replaced, since locking is how it gets repaired."""
    if not workspace.lock_path.exists():
        return None
    try:
        return read_lock_file(workspace.lock_path)
    except UserError as error:
        log.warning("%s; solving from scratch", error.one_line())
        return None


def _existing_records(lock: LockFile | None, environment: str, platform: str) -> list[RepoDataRecord] | None:
    return environment_records(lock, environment, platform) if lock is not None else None


def check_gpu_variants(workspace: Workspace, environment: str, platform: str, records: list[RepoDataRecord]) -> None:
    """A CUDA environment that locked a CPU build is an error: the silent fallback this project exists to stop."""
    for record in records:
        if is_cpu_variant(str(record.build), [str(f) for f in record.track_features or []]):
            raise UserError(
                f"environment '{environment}' declares CUDA but the lock for {platform} holds the CPU build "
                f"{record.name.normalized} {record.version} {record.build}",
                path=workspace.manifest_path,
                fix=f'require the GPU build, e.g. {record.name.normalized} = {{ version = "*", build = "cuda*" }}',
            )


def _validate_request(workspace: Workspace, request: LockRequest) -> None:
    check_flavor_folders(workspace)
    channels = {url for name in workspace.environment_names() for url in workspace.resolve(name).channels}
    for canonical in request.mirrors:
        if canonical not in channels:
            raise UserError(
                f"--mirror names {canonical}, which no environment uses",
                path=workspace.manifest_path,
                fix=f"mirror one of: {', '.join(sorted(channels))}",
            )
    for name in request.environments:
        workspace.resolve(name)  # raises on an unknown environment
    known_platforms = {p.name for p in workspace.platforms}
    for platform in request.platforms:
        if platform not in known_platforms:
            raise UserError(
                f"unknown platform '{platform}'",
                path=workspace.manifest_path,
                fix=f"known platforms: {', '.join(sorted(known_platforms))}",
            )


def _wanted(request: LockRequest, environment: str, platform: str) -> bool:
    env_ok = not request.environments or environment in request.environments
    platform_ok = not request.platforms or platform in request.platforms
    return env_ok and platform_ok


def solve_environment(
    workspace: Workspace,
    environment: ResolvedEnvironment,
    request: LockRequest,
    existing: LockFile | None,
) -> SolvedEnvironment:
    sources = channel_sources(environment.channels, request.mirrors)
    if environment.pypi_dependencies:
        log.warning(
            "environment '%s': PyPI dependencies (%s) are locked by pixi only; this engine locks conda packages",
            environment.name,
            ", ".join(sorted(environment.pypi_dependencies)),
        )
    platforms = {}
    for platform in environment.platforms:
        previous = _existing_records(existing, environment.name, platform.name)
        if _wanted(request, environment.name, platform.name) or previous is None:
            if request.on_solve is not None:
                request.on_solve(environment.name, platform.name)
            records = solve_platform(
                workspace,
                environment,
                platform,
                sources,
                locked=None if request.update else previous,
                cache_dir=request.cache_dir,
            )
        else:
            records = previous
        if environment.declares_cuda(platform):
            check_gpu_variants(workspace, environment.name, platform.name, records)
        platforms[platform.name] = (platform, virtual_package_strings(platform), records)
    return SolvedEnvironment(environment.name, environment.channels, platforms)


def lock_workspace(workspace: Workspace, request: LockRequest) -> LockResult:
    """Solve what the request asks for, keep the rest of the existing lock, and render the result."""
    _validate_request(workspace, request)
    existing = _existing_lock(workspace)
    solved: list[SolvedEnvironment] = []
    for name in workspace.environment_names():
        wanted = not request.environments or name in request.environments
        previous_env = existing.environment(name) if existing else None
        if not wanted and previous_env is None:
            continue  # never locked and not asked for: stays out, as with `pixi lock --environment`
        solved.append(solve_environment(workspace, workspace.resolve(name), request, existing))
    content = render_lock(solved)
    current = workspace.lock_path.read_bytes() if workspace.lock_path.exists() else None
    counts = {env.name: {p: len(r) for p, (_, _, r) in env.platforms.items()} for env in solved}
    return LockResult(workspace.lock_path, content, content != current, counts)


def write_result(result: LockResult) -> None:
    if result.changed:
        write_lock(result.path, result.content)


def lock_with_pixi(workspace: Workspace, check: bool) -> int:
    """Delegate to the real `pixi lock`, for users who have pixi."""
    pixi = shutil.which("pixi")
    if pixi is None:
        raise UserError("`--engine pixi` needs the pixi executable on PATH", fix="install pixi or use --engine rattler")
    command = [pixi, "lock", "--manifest-path", str(workspace.manifest_path)]
    if check:
        command.append("--check")
    return subprocess.call(command)
