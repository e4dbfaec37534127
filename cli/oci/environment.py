"""The flavor environment layer: pixi.lock installed with py-rattler into a staging folder, then packed.

Records come from the lock (never a re-solve), archives are sha256-checked by
`cli.lockengine.install.fetch_verified`, and py-rattler links them into
`<staging>/opt/conda/envs/<flavor>` with `alternative_target_prefix` set to the final
`/opt/conda/envs/<flavor>`: files carrying the build prefix placeholder name the path the
image will have, not the staging folder. No link script runs and no GPU is needed (the
host's CUDA is not checked: the image is built here, run elsewhere).

What py-rattler records about this machine is normalised away: conda-meta/*.json name
the lock's URL and channel (as `cli install` does) and lose the package-cache paths
(`extracted_package_dir`, `package_tarball_full_path`, `link`), which exist only here.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import rattler
from rattler import RepoDataRecord, Subdir

from cli.errors import UserError
from cli.lockengine.export import export_paths
from cli.lockengine.install import fetch_verified
from cli.lockengine.lockfile import locked_records
from cli.lockengine.manifest import Workspace
from cli.oci.common import CONDA_ROOT
from cli.oci.tarball import Entry, file_copy, tree_entries

PLATFORM = "linux-64"
MACHINE_KEYS = ("extracted_package_dir", "package_tarball_full_path", "link")


@dataclass(frozen=True)
class StagedEnvironment:
    flavor: str
    stage: Path  # the folder standing for the image's /
    prefix: Path  # <stage>/opt/conda/envs/<flavor>
    records: list[RepoDataRecord]

    @property
    def final_prefix(self) -> str:
        return final_prefix(self.flavor)

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
    return f"{CONDA_ROOT}/envs/{flavor}"


def stage_environment(workspace: Workspace, flavor: str, stage: Path, cache: Path) -> StagedEnvironment:
    """Install the flavor's locked linux-64 packages under `stage` as if `stage` were the image's root."""
    records = locked_records(workspace, flavor, PLATFORM)
    store = cache / "verified-archives"
    local = [
        RepoDataRecord(record, record.file_name, fetch_verified(record, store, None).as_uri(), record.channel)
        for record in records
    ]
    target = final_prefix(flavor)
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
    normalise_conda_meta(prefix, records)
    (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)  # py-rattler marks the prefix as a cache; an image is not one
    return StagedEnvironment(flavor, stage, prefix, records)


def normalise_conda_meta(prefix: Path, records: list[RepoDataRecord]) -> None:
    """conda-meta names the lock's URL and channel and nothing of the build machine's package cache."""
    for record in records:
        meta = prefix / "conda-meta" / f"{record.name.normalized}-{record.version}-{record.build}.json"
        if not meta.is_file():
            raise UserError(f"py-rattler wrote no {meta.name}", path=meta.parent, fix="report this as a bug")
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


def environment_entries(workspace: Workspace, staged: StagedEnvironment) -> list[Entry]:
    """The prefix, plus the export it was locked as (what flavors/Dockerfile copies to /opt/conda/locks/)."""
    entries = tree_entries(staged.prefix, staged.final_prefix.lstrip("/"))
    export = export_paths(workspace, staged.flavor, [PLATFORM]).conda_lock
    if export.is_file():
        entries.append(file_copy(f"{CONDA_ROOT.lstrip('/')}/locks/{staged.flavor}/{export.name}", export, mode=0o644))
    return entries
