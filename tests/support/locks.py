"""Read what a pixi.lock holds for one environment and platform, with py-rattler (the reader pixi shares)."""

from __future__ import annotations

from pathlib import Path

from rattler import LockFile, RepoDataRecord


def lock_records(lock_path: Path, environment: str, platform: str = "linux-64") -> dict[str, RepoDataRecord]:
    lock = LockFile.from_path(lock_path)
    lock_platform = next(p for p in lock.platforms() if p.name == platform)
    env = lock.environment(environment)
    assert env is not None, f"{environment} is not in {lock_path}"
    return {r.name.normalized: r for r in env.conda_repodata_records_for_platform(lock_platform) or []}
