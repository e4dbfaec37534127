"""The flavor environment layer: pixi.lock installed with py-rattler into a staging folder, then packed.

Records come from the lock (never a re-solve) and go through the verified install of
`cli.lockengine.install` (archives sha256-checked, every cache entry checked against its
paths.json and repaired from its archive before anything is linked), which hard-links them into
`<staging>/opt/conda/envs/<flavor>` with `alternative_target_prefix` set to the final
`/opt/conda/envs/<flavor>`: files carrying the build prefix placeholder name the path the
image will have, not the staging folder. No link script runs and no GPU is needed (the
host's CUDA is not checked: the image is built here, run elsewhere).

What py-rattler records about this machine is normalised away: conda-meta/*.json name
the lock's URL and channel (as `cli install` does) and lose the package-cache paths
(`extracted_package_dir`, `package_tarball_full_path`, `link`), which exist only here.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rattler import RepoDataRecord

from cli.errors import UserError
from cli.lockengine.export import export_paths
from cli.lockengine.install import InstallOptions, LinkMode, install_records
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


def stage_environment(
    workspace: Workspace, flavor: str, stage: Path, cache: Path, mirrors: dict[str, str] | None = None
) -> StagedEnvironment:
    """Install the flavor's locked linux-64 packages under `stage` as if `stage` were the image's root."""
    records = locked_records(workspace, flavor, PLATFORM)
    target = final_prefix(flavor)
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
