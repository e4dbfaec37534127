"""The staged environment packed as layers: the layer plan applied, every package file vouched for.

Each file a package placed carries what its package states of it (`cli.oci.tarball.Vouch`):
paths.json's sha256 and size, as py-rattler copies them into conda-meta. `cli.oci.tarball`
checks the bytes against it as they stream into the layer. A file whose build prefix
placeholder the installer replaced is checked against what the installer recorded writing,
and its original in the package cache against paths.json, before packing. conda-meta
records go with their package; what no package owns (conda-meta/history, empty folders, the
lock export) goes into a last small layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rattler import RepoDataRecord

from cli.file_hashing import sha256_of
from cli.lockengine.export import export_paths
from cli.lockengine.lockfile import locked_records
from cli.lockengine.manifest import Workspace
from cli.lockengine.package_cache import default_cache_root
from cli.lockengine.sharing import shared_identities
from cli.oci.environment import LOCKS_DIR, PLATFORM, StagedEnvironment
from cli.oci.layer_plan import PlannedLayer, plan_layers
from cli.oci.tarball import Entry, UnvouchedFile, Vouch, file_copy, tree_entries


def repair_hint(cache: Path) -> str:
    command = "python -m cli cache verify --repair"
    if cache != default_cache_root():
        command = f"{command} --cache-dir {cache}"
    return f"repair the package cache with `{command}`, then build again"


def check_rewritten_sources(staged: StagedEnvironment) -> None:
    """A file the installer rewrote came from a cache file that must be what paths.json says."""
    fix = repair_hint(staged.cache)
    for package in staged.packages:
        for file in package.files:
            if file.source is None or file.source_sha256 is None:
                continue
            actual = sha256_of(file.source) if file.source.is_file() else "missing"
            if actual != file.source_sha256:
                raise UnvouchedFile(
                    f"is not the file of package {package.label} (sha256 {actual[:12]}... where paths.json has "
                    f"{file.source_sha256[:12]}...): its package cache entry is damaged",
                    path=file.source,
                    fix=fix,
                )


@dataclass(frozen=True)
class EnvironmentLayer:
    """One layer of the environment: a planned group of packages, or the rest (role `environment`)."""

    role: str  # shared, flavor, environment
    label: str
    packages: tuple[str, ...]
    entries: list[Entry]
    mtime: int

    @property
    def description(self) -> str:
        if self.role == "environment":
            return "environment metadata (conda-meta/history, the lock export, empty folders)"
        owner = "packages every flavor shares" if self.role == "shared" else "the flavor's own packages"
        return f"{owner}: {self.label} ({', '.join(self.packages)})"


def flavor_records(workspace: Workspace, flavors: Sequence[str]) -> dict[str, list[RepoDataRecord]]:
    """Every flavor's linux-64 records: the layer plan shares what all of them hold identically."""
    return {flavor: locked_records(workspace, flavor, PLATFORM) for flavor in flavors}


def environment_layers(
    workspace: Workspace,
    staged: StagedEnvironment,
    records_by_flavor: Mapping[str, Sequence[RepoDataRecord]],
    epoch: int,
    *,
    verify: bool = True,
) -> list[EnvironmentLayer]:
    """The staged prefix split by the layer plan, every package file vouched for, plus the lock export."""
    if verify:
        check_rewritten_sources(staged)
    root = staged.final_prefix.lstrip("/")
    entries = tree_entries(staged.prefix, root)
    owners, vouches = _owners_and_vouches(staged, root)
    sizes: dict[str, int] = {}
    for entry in entries:
        owner = owners.get(entry.path)
        if owner is not None and entry.kind == "file":
            sizes[owner] = sizes.get(owner, 0) + entry.size()
    plan = plan_layers(staged.records, shared_identities(records_by_flavor), sizes)
    layer_of = {name: index for index, layer in enumerate(plan) for name in layer.packages}
    grouped: list[list[Entry]] = [[] for _ in plan]
    rest: list[Entry] = []
    parents = {entry.path.rsplit("/", 1)[0] for entry in entries}
    for entry in entries:
        owner = owners.get(entry.path)
        if entry.kind == "dir":
            if entry.path not in parents:  # an empty folder: no layer's files imply it
                rest.append(entry)
        elif owner is None:
            rest.append(entry)
        else:
            vouch = vouches.get(entry.path) if verify else None
            grouped[layer_of[owner]].append(replace(entry, vouch=vouch) if vouch and entry.kind == "file" else entry)
    export = export_paths(workspace, staged.flavor, [PLATFORM]).conda_lock
    if export.is_file():
        rest.append(file_copy(f"{LOCKS_DIR.lstrip('/')}/{staged.flavor}/{export.name}", export, mode=0o644))
    layers = [_layer(planned, files, epoch) for planned, files in zip(plan, grouped, strict=True)]
    layers.append(EnvironmentLayer("environment", "metadata", (), rest, epoch))
    return layers


def _layer(planned: PlannedLayer, entries: list[Entry], epoch: int) -> EnvironmentLayer:
    return EnvironmentLayer(planned.part, planned.label, planned.packages, entries, planned.mtime(epoch))


def _owners_and_vouches(staged: StagedEnvironment, root: str) -> tuple[dict[str, str], dict[str, Vouch]]:
    """Layer path -> package name (conda-meta record included), and -> what its bytes must be.

    A path two packages claim (one clobbered the other) belongs to no package's layer.
    """
    fix = repair_hint(staged.cache)
    owners: dict[str, str | None] = {}
    vouches: dict[str, Vouch] = {}
    for package in staged.packages:
        for path in (package.meta, *(file.path for file in package.files)):
            key = f"{root}/{path}"
            owners[key] = None if key in owners else package.name
        for file in package.files:
            vouches[f"{root}/{file.path}"] = Vouch(package.label, file.sha256, file.size, fix)
    return {path: owner for path, owner in owners.items() if owner is not None}, vouches
