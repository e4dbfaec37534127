"""Read what a pixi.lock holds for one environment and platform, with py-rattler (the reader pixi shares)."""

from __future__ import annotations

from pathlib import Path

from rattler import LockFile, RepoDataRecord


def lock_records(lock_path: Path, environment: str, platform: str = "linux-64") -> dict[str, RepoDataRecord]:
    """`platform` is a lock platform's name, or a subdir when one platform of the environment has it."""
    lock = LockFile.from_path(lock_path)
    env = lock.environment(environment)
    assert env is not None, f"{environment} is not in {lock_path}"
    by_name = [p for p in env.platforms() if p.name == platform]
    by_subdir = [p for p in env.platforms() if str(p.subdir) == platform]
    lock_platform = (by_name or by_subdir)[0]
    return {r.name.normalized: r for r in env.conda_repodata_records_for_platform(lock_platform) or []}
