"""The flavor environment: pixi.lock installed with py-rattler into a staging folder, then packed as layers.

Records come from the lock (never a re-solve), archives are sha256-checked by
`cli.lockengine.install.fetch_verified`, and py-rattler links them into
`<staging>/opt/conda/envs/flavor` with `alternative_target_prefix` set to the final
`/opt/conda/envs/flavor`: files carrying the build prefix placeholder name the path the
image will have, not the staging folder. No link script runs and no GPU is needed (the
host's CUDA is not checked: the image is built here, run elsewhere).

Every flavor has the same prefix, `/opt/conda/envs/flavor` (the docker path's too), so a
package locked identically in two flavors gives identical files, and identical layers
(`cli.oci.layer_plan` decides which packages share a layer).

What py-rattler records about this machine is normalised away: conda-meta/*.json name
the lock's URL and channel (as `cli install` does) and lose the package-cache paths
(`extracted_package_dir`, `package_tarball_full_path`, `link`), which exist only here.

Only vouched-for bytes are packed: each package file carries what the package states of
it (paths.json's sha256 and size, as py-rattler copies them into conda-meta), and
`cli.oci.tarball` checks the bytes against it as they stream into the layer. A file whose
build prefix placeholder the installer replaced is checked against what the installer
wrote, and its source in the package cache against paths.json before packing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import rattler
from rattler import RepoDataRecord, Subdir

from cli.errors import UserError
from cli.lockengine.export import export_paths
from cli.lockengine.install import default_cache_dir, fetch_verified
from cli.lockengine.lockfile import locked_records
from cli.lockengine.manifest import Workspace
from cli.oci.common import CONDA_ROOT
from cli.oci.layer_plan import PlannedLayer, plan_layers, shared_identities
from cli.oci.tarball import CHUNK, Entry, UnvouchedFile, Vouch, file_copy, tree_entries

PLATFORM = "linux-64"
FLAVOR_PREFIX = f"{CONDA_ROOT}/envs/flavor"
LOCKS_DIR = f"{CONDA_ROOT}/locks"
MACHINE_KEYS = ("extracted_package_dir", "package_tarball_full_path", "link")
ENTRY_POINT_TYPES = ("python_entry_point", "unix_python_entry_point", "windows_python_entry_point_script")


@dataclass(frozen=True)
class InstalledFile:
    """One file a package placed in the prefix, and what its bytes must be."""

    path: str  # relative to the prefix
    sha256: str | None  # of the bytes in the prefix
    size: int | None
    source: Path | None = None  # a rewritten file's original in the package cache ...
    source_sha256: str | None = None  # ... and what paths.json says of it


@dataclass(frozen=True)
class InstalledPackage:
    record: RepoDataRecord
    meta: str  # conda-meta/<name>-<version>-<build>.json, relative to the prefix
    files: tuple[InstalledFile, ...]

    @property
    def name(self) -> str:
        return self.record.name.normalized

    @property
    def label(self) -> str:
        return f"{self.name}-{self.record.version}-{self.record.build}"


@dataclass(frozen=True)
class StagedEnvironment:
    flavor: str
    stage: Path  # the folder standing for the image's /
    prefix: Path  # <stage>/opt/conda/envs/flavor
    records: list[RepoDataRecord]
    packages: list[InstalledPackage]
    cache: Path  # the package cache it was linked from

    @property
    def final_prefix(self) -> str:
        return FLAVOR_PREFIX

    def disk_size(self) -> int:
        """Bytes of the environment's regular files (what an unpacked image holds)."""
        total = 0
        for current, _dirs, files in os.walk(self.prefix):
            for name in files:
                path = Path(current) / name
                if not path.is_symlink():
                    total += path.stat().st_size
        return total


def final_prefix(flavor: str) -> str:
    """Where FLAVOR's environment lives in its image: the same folder for every flavor."""
    return FLAVOR_PREFIX


def stage_environment(workspace: Workspace, flavor: str, stage: Path, cache: Path) -> StagedEnvironment:
    """Install the flavor's locked linux-64 packages under `stage` as if `stage` were the image's root."""
    records = locked_records(workspace, flavor, PLATFORM)
    store = cache / "verified-archives"
    local = [
        RepoDataRecord(record, record.file_name, fetch_verified(record, store, None).as_uri(), record.channel)
        for record in records
    ]
    target = FLAVOR_PREFIX
    prefix = stage / target.lstrip("/")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(
            rattler.install(
                local,
                target_prefix=prefix,
                alternative_target_prefix=target,
                cache_dir=cache / "pkgs",
                platform=Subdir(PLATFORM),
                execute_link_scripts=False,
                show_progress=False,
            )
        )
    except Exception as error:  # rattler raises its own link and IO errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot install '{flavor}' into the image's staging folder: {first}", path=prefix) from error
    packages = read_installed(prefix, records)
    normalise_conda_meta(prefix, records)
    return StagedEnvironment(flavor, stage, prefix, records, packages, cache)


def meta_path(prefix: Path, record: RepoDataRecord) -> Path:
    meta = prefix / "conda-meta" / f"{record.name.normalized}-{record.version}-{record.build}.json"
    if not meta.is_file():
        raise UserError(f"py-rattler wrote no {meta.name}", path=meta.parent, fix="report this as a bug")
    return meta


def read_installed(prefix: Path, records: list[RepoDataRecord]) -> list[InstalledPackage]:
    """What py-rattler placed for each package, read from conda-meta before it is normalised."""
    site_packages = python_site_packages(records)
    packages = []
    for record in records:
        meta = meta_path(prefix, record)
        data = json.loads(meta.read_text(encoding="utf-8"))
        extracted = Path(data["extracted_package_dir"]) if data.get("extracted_package_dir") else None
        paths = (data.get("paths_data") or {}).get("paths") or []
        files = tuple(
            installed_file(entry, extracted, bool(record.noarch.python), site_packages)
            for entry in paths
            if entry.get("path_type") != "directory"
        )
        packages.append(InstalledPackage(record, meta.relative_to(prefix).as_posix(), files))
    return packages


def python_site_packages(records: Sequence[RepoDataRecord]) -> str:
    python = next((r for r in records if r.name.normalized == "python"), None)
    if python is None:
        return "lib/python3/site-packages"
    if python.python_site_packages_path:
        return str(python.python_site_packages_path)
    major, minor = str(python.version).split(".")[:2]
    return f"lib/python{major}.{minor}/site-packages"


def installed_file(entry: dict[str, Any], extracted: Path | None, noarch_python: bool, site: str) -> InstalledFile:
    """The expected bytes of one conda-meta `paths_data` entry (its sha256 and size are paths.json's)."""
    path = entry["_path"]
    sha256, size = entry.get("sha256"), entry.get("size_in_bytes")
    if entry.get("prefix_placeholder"):  # rewritten by the installer: check what it wrote, and its source
        original = original_path(path, noarch_python, site)
        source = extracted / original if extracted is not None else None
        return InstalledFile(path, entry.get("sha256_in_prefix"), None, source, sha256)
    return InstalledFile(path, sha256, size)


def original_path(path: str, noarch_python: bool, site: str) -> str:
    """Where a noarch: python package keeps an installed file in its archive (site-packages/, python-scripts/)."""
    if noarch_python and path.startswith(f"{site}/"):
        return "site-packages/" + path[len(site) + 1 :]
    if noarch_python and path.startswith("bin/"):
        return "python-scripts/" + path[len("bin/") :]
    return path


def normalise_conda_meta(prefix: Path, records: list[RepoDataRecord]) -> None:
    """conda-meta names the lock's URL and channel and nothing of the build machine's package cache."""
    for record in records:
        meta = meta_path(prefix, record)
        data = json.loads(meta.read_text(encoding="utf-8"))
        data["url"] = record.url
        data["channel"] = record.channel
        for key in MACHINE_KEYS:
            data.pop(key, None)
        _replace_text(meta, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _replace_text(path: Path, text: str) -> None:
    """A new file (new inode): the old one may be a hard link into the package cache."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(name, path)


def repair_hint(cache: Path) -> str:
    command = "python -m cli cache verify --repair"
    if cache != default_cache_dir():
        command = f"{command} --cache-dir {cache}"
    return f"repair the package cache with `{command}`, then build again"


def check_rewritten_sources(staged: StagedEnvironment) -> None:
    """A file the installer rewrote came from a cache file that must be what paths.json says."""
    fix = repair_hint(staged.cache)
    for package in staged.packages:
        for file in package.files:
            if file.source is None or file.source_sha256 is None:
                continue
            actual = _sha256_of(file.source) if file.source.is_file() else "missing"
            if actual != file.source_sha256:
                raise UnvouchedFile(
                    f"is not the file of package {package.label} (sha256 {actual[:12]}... where paths.json has "
                    f"{file.source_sha256[:12]}...): its package cache entry is damaged",
                    path=file.source,
                    fix=fix,
                )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
