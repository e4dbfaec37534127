"""The Docker path's split of the flavors: what every flavor shares, and what each holds on its own.

Derived from pixi.lock by `python -m cli export`, next to the whole-flavor exports:

- `envs/_shared/<subdir>.explicit`: the packages every flavor locks identically
  (`cli.lockengine.sharing`, the rule the OCI engine's layer plan follows too), installed once
  into the shared stage image (flavors/Dockerfile.shared) that every flavor image is built FROM.
  pixi names environments with `[a-z0-9-]` only, so `_shared` never names a flavor's folder.
- `envs/<flavor>/<subdir>.own.explicit`: the flavor's other packages, installed by
  flavors/Dockerfile onto that stage.

Both are @EXPLICIT files (CEP 23): micromamba installs them without a solver, in the order
written, so packages are in dependency order (py-rattler's deterministic topological sort),
and each URL carries the lock's sha256 as `#sha256:<hex>` (micromamba checks the sha256 when
one is given, else the md5; conda-lock's renderer writes only md5). A package already in the
prefix is never listed again: its files would be linked a second time, into the flavor's layer.

The shared export changes when any flavor's lock changes what is shared; an own export records
both its flavor's digest and the shared export's, so a stale one is found by rendering again
and comparing bytes, as for the other exports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cli.flavors import discover_flavors
from cli.lockengine.export import ENVS_DIR, GENERATOR, FlavorLock, flavor_lock
from cli.lockengine.manifest import Workspace
from cli.lockengine.sharing import shared_identities, split_shared

if TYPE_CHECKING:
    from rattler import LockFile, RepoDataRecord

SHARED_FOLDER = "_shared"
EXPLICIT_SUFFIX = ".explicit"
OWN_SUFFIX = ".own.explicit"


@dataclass(frozen=True)
class SplitExport:
    """One file of the split: where it goes, the packages it lists (in install order) and its text."""

    path: Path
    environment: str  # the flavor, or SHARED_FOLDER
    platform: str
    records: list[RepoDataRecord]
    text: str


def shared_export_path(workspace: Workspace, platform: str) -> Path:
    return workspace.root / ENVS_DIR / SHARED_FOLDER / f"{platform}{EXPLICIT_SUFFIX}"


def own_export_path(workspace: Workspace, flavor: str, platform: str) -> Path:
    return workspace.root / ENVS_DIR / flavor / f"{platform}{OWN_SUFFIX}"


def install_order(records: Sequence[RepoDataRecord]) -> list[RepoDataRecord]:
    """Dependencies first; the same order whatever order the lock lists them in."""
    from rattler import PackageRecord

    by_name = {record.name.normalized: record for record in records}
    return [by_name[record.name.normalized] for record in PackageRecord.sort_topologically(list(records))]


def explicit_line(record: RepoDataRecord) -> str:
    if record.sha256 is not None:
        return f"{record.url}#sha256:{record.sha256.hex()}"
    assert record.md5 is not None  # environment_lock refuses a record with neither
    return f"{record.url}#{record.md5.hex()}"


def content_digest(platform: str, records: Sequence[RepoDataRecord]) -> str:
    listed = sorted(f"{r.url}#{r.sha256.hex() if r.sha256 else ''}" for r in records)
    return hashlib.sha256(json.dumps({"platform": platform, "packages": listed}).encode()).hexdigest()


def _subdir(records: Sequence[RepoDataRecord], platform: str) -> str:
    subdirs = {str(r.subdir) for r in records if str(r.subdir) != "noarch"}
    return subdirs.pop() if len(subdirs) == 1 else platform


def _explicit(header: list[str], subdir: str, records: list[RepoDataRecord]) -> str:
    return "\n".join([*header, f"# platform: {subdir}", "@EXPLICIT", *map(explicit_line, records)]) + "\n"


def render_shared(flavors: list[str], platform: str, subdir: str, records: list[RepoDataRecord]) -> str:
    header = [
        f"# Derived from pixi.lock by {GENERATOR}; do not edit.",
        f"# The packages every flavor ({', '.join(flavors)}) locks identically: the shared stage of the Docker",
        f"# path (flavors/Dockerfile.shared). Each flavor's other packages: envs/<flavor>/{platform}{OWN_SUFFIX}.",
        f"# pixi-lock-shared-sha256: {content_digest(platform, records)}",
    ]
    return _explicit(header, subdir, records)


def render_own(locked: FlavorLock, platform: str, subdir: str, records: list[RepoDataRecord], shared: str) -> str:
    pypi = sorted(str(e["name"]) for e in locked.pypi.get(platform) or [])
    header = [
        f"# Derived from pixi.lock environment '{locked.flavor}' by {GENERATOR}; do not edit.",
        f"# Its packages that are not in envs/{SHARED_FOLDER}/{platform}{EXPLICIT_SUFFIX}, installed by",
        "# flavors/Dockerfile onto the shared stage.",
        f"# pixi-lock-environment-sha256: {locked.digest()}",
        f"# pixi-lock-shared-sha256: {shared}",
        *([f"# PyPI packages left out: {', '.join(pypi)}"] if pypi else []),
    ]
    return _explicit(header, subdir, records)


def split_exports(workspace: Workspace, lock: LockFile, flavors: Sequence[str] | None = None) -> list[SplitExport]:
    """The shared exports (every platform of any flavor) and the own exports of `flavors` (default: all).

    What is shared is decided over every flavor of the workspace, whichever are exported. PyPI
    packages have no place in an @EXPLICIT file: the own export names them as left out, as the
    whole-flavor `<subdir>.explicit` does, whose export (and so every build) refuses them unless
    told to leave them out.
    """
    every = [flavor.name for flavor in discover_flavors(workspace)]
    locks = {name: flavor_lock(lock, workspace, name) for name in every}
    chosen = every if flavors is None else list(flavors)
    platforms = sorted({platform for locked in locks.values() for platform in locked.records})
    result: list[SplitExport] = []
    for platform in platforms:
        by_flavor = {name: locked.records.get(platform, []) for name, locked in locks.items()}
        shared = shared_identities(by_flavor)
        common = _shared_records(by_flavor, shared)
        subdir = _subdir([r for records in by_flavor.values() for r in records], platform)
        text = render_shared(every, platform, subdir, common)
        result.append(SplitExport(shared_export_path(workspace, platform), SHARED_FOLDER, platform, common, text))
        digest = content_digest(platform, common)
        for name in chosen:
            if platform not in locks[name].records:
                continue
            own = install_order(split_shared(by_flavor[name], shared)[1])
            text = render_own(locks[name], platform, subdir, own, digest)
            result.append(SplitExport(own_export_path(workspace, name, platform), name, platform, own, text))
    return result


def _shared_records(by_flavor: dict[str, list[RepoDataRecord]], shared: set[str]) -> list[RepoDataRecord]:
    """The shared records as the first flavor (by name) locks them: the others hold the same archives."""
    if not shared:
        return []
    first = by_flavor[min(by_flavor)]
    return install_order(split_shared(first, shared)[0])
