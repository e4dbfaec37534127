"""The flavor environment: pixi.lock installed with py-rattler into a staging folder, then packed as layers.

Records come from the lock (never a re-solve) and go through the verified install of
`cli.lockengine.install` (archives sha256-checked, every cache entry checked against its
paths.json and repaired from its archive before anything is linked), which hard-links them into
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

`read_installed` keeps what conda-meta says each package placed (paths.json's sha256 and
size, as py-rattler copies them) before normalising: `cli.oci.environment_layers` packs
only bytes that match it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rattler import RepoDataRecord

from cli.errors import UserError
from cli.lockengine.install import InstallOptions, LinkMode, install_records
from cli.lockengine.lockfile import locked_records
from cli.lockengine.manifest import Workspace
from cli.oci.common import CONDA_ROOT

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


def stage_environment(
    workspace: Workspace, flavor: str, stage: Path, cache: Path, mirrors: dict[str, str] | None = None
) -> StagedEnvironment:
    """Install the flavor's locked linux-64 packages under `stage` as if `stage` were the image's root."""
    records = locked_records(workspace, flavor, PLATFORM)
    target = FLAVOR_PREFIX
    prefix = stage / target.lstrip("/")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # Hard links: the stage is read once into a layer and removed, never edited.
    options = InstallOptions(
        cache_dir=cache,
        link=LinkMode.hardlink,
        mirrors=mirrors or {},
        platform=PLATFORM,
        alternative_target_prefix=target,
        show_progress=False,
    )
    install_records(records, prefix, options)
    packages = read_installed(prefix, records)
    normalise_conda_meta(prefix, records)
    (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)  # py-rattler marks the prefix as a cache; an image is not one
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
