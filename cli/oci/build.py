"""`build_oci_image`: one flavor image assembled from pixi.lock as an OCI layout tar, without a daemon.

Layers, in the order of the docker path: the base (unchanged), the common layer (scu,
entrypoint, runner), the flavor environment split by the layer plan (the layers of
packages every flavor shares, then the flavor's own, then the environment's metadata;
`cli.oci.layer_plan`), the service layer (service.cli/, the runner's byte-code). Every
byte follows from the inputs: the lock, the workspace's files, the base, and
SOURCE_DATE_EPOCH (the commit time of pixi.lock unless given), so the same commit gives the
same manifest digest on any machine with the same tools.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.errors import UserError
from cli.flavors import discover_flavors, get_flavor
from cli.images.freshness import check_fresh
from cli.images.locked_tools import check_locked_tools
from cli.images.plan import FlavorSpec
from cli.lockengine.manifest import Workspace
from cli.lockengine.package_cache import default_cache_root
from cli.oci.base import ARCHITECTURE, DEFAULT_PATH, OS, BaseImage, import_base
from cli.oci.common import CMD, ENTRYPOINT, WORKING_DIR, CommonSources, common_entries
from cli.oci.environment import PLATFORM, stage_environment
from cli.oci.environment_layers import environment_layers, flavor_records
from cli.oci.layer_cache import LayerCache
from cli.oci.layout import MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST, BlobStore, Descriptor, pack_layout, remove_tree
from cli.oci.service import (
    flavor_env,
    image_env,
    image_labels,
    iso_time,
    python_version,
    runner_bytecode_entries,
    service_entries,
)
from cli.oci.tarball import COMPRESSION_LABEL, Compression, Entry, check_compressor, compression_label, write_layer

log = logging.getLogger(__name__)

EPOCH_VARIABLE = "SOURCE_DATE_EPOCH"
CREATED_BY = "osparc-ml-runners `cli build --engine oci`"


@dataclass(frozen=True)
class LayerInfo:
    role: str  # base, common, shared (packages every flavor shares), flavor (its own), environment, service
    digest: str
    diff_id: str
    size: int
    media_type: str
    label: str = ""  # which packages, for shared and flavor layers
    packages: tuple[str, ...] = ()
    uncompressed_size: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "label": self.label,
            "packages": list(self.packages),
            "digest": self.digest,
            "diff_id": self.diff_id,
            "size": self.size,
            "uncompressed_size": self.uncompressed_size,
            "media_type": self.media_type,
        }


@dataclass(frozen=True)
class OciBuildResult:
    flavor: str
    image: str
    output: Path
    manifest_digest: str
    config_digest: str
    layers: list[LayerInfo]
    archive_size: int
    environment_size: int
    source_date_epoch: int
    seconds: float
    labels: dict[str, str] = field(default_factory=dict)

    def layer(self, role: str) -> LayerInfo:
        return next(layer for layer in self.layers if layer.role == role)

    def layers_of(self, *roles: str) -> list[LayerInfo]:
        return [layer for layer in self.layers if layer.role in roles]

    def as_json(self) -> dict[str, Any]:
        return {
            "flavor": self.flavor,
            "image": self.image,
            "output": str(self.output),
            "manifest_digest": self.manifest_digest,
            "config_digest": self.config_digest,
            "layers": [layer.as_json() for layer in self.layers],
            "archive_size": self.archive_size,
            "environment_size": self.environment_size,
            "source_date_epoch": self.source_date_epoch,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> list[str]:
        """What the CLI prints: the archive, its manifest digest, and one line per layer."""
        lines = [
            f"built {self.image} (oci) -> {self.output}",
            f"manifest {self.manifest_digest}",
            f"size {_mb(self.archive_size)} (environment on disk {_mb(self.environment_size)}), "
            f"SOURCE_DATE_EPOCH={self.source_date_epoch}, {self.seconds:.1f} s",
        ]
        lines += [
            f"  {layer.role:11} {layer.digest}  {_mb(layer.size):>10}  {layer.label}".rstrip() for layer in self.layers
        ]
        return lines


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def git_lock_epoch(workspace: Workspace) -> int | None:
    """The commit time of pixi.lock, or None outside git or before the lock is committed."""
    try:
        done = subprocess.run(
            ["git", "-C", str(workspace.root), "log", "-1", "--format=%ct", "--", workspace.lock_path.name],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    text = done.stdout.strip()
    return int(text) if done.returncode == 0 and text.isdigit() else None


def resolve_epoch(workspace: Workspace, explicit: int | None = None) -> int:
    """The given epoch, else $SOURCE_DATE_EPOCH, else pixi.lock's commit time, else 0 (never a file's mtime)."""
    if explicit is not None:
        if explicit < 0:
            raise UserError(f"SOURCE_DATE_EPOCH must not be negative: {explicit}")
        return explicit
    configured = os.environ.get(EPOCH_VARIABLE, "").strip()
    if configured:
        if not configured.isdigit():
            raise UserError(
                f"{EPOCH_VARIABLE}={configured!r} is not a number of seconds", fix="set it to e.g. $(date +%s)"
            )
        return int(configured)
    committed = git_lock_epoch(workspace)
    if committed is not None:
        return committed
    log.warning("%s is not committed in git: SOURCE_DATE_EPOCH defaults to 0", workspace.lock_path)
    return 0


def build_oci_image(
    workspace: Workspace,
    flavor_name: str,
    base: Path,
    output: Path,
    *,
    source_date_epoch: int | None = None,
    cache_dir: Path | None = None,
    compression: Compression = Compression.zstd,
    mirrors: dict[str, str] | None = None,
    verify_files: bool = True,
    reuse_layers: bool = True,
) -> OciBuildResult:
    """Build FLAVOR's image on `base` (OCI archive or rootfs tar) into `output`, an OCI image layout tar.

    Layers made before from the same members are reused (`cli.oci.layer_cache`, beside the
    package cache) unless `reuse_layers` is False. `verify_files=False` packs package files
    without checking them against paths.json: only for `bench/oci.py`, to measure what the
    check costs.
    """
    started = time.perf_counter()
    check_compressor(compression)  # before any work: another libzstd would give other digests
    flavor = get_flavor(workspace, flavor_name)
    spec = FlavorSpec.load(workspace, flavor)
    check_no_pypi(workspace, flavor.name)  # before freshness: the export refuses them too, less plainly
    check_fresh(workspace, [spec])  # the docker path's refusal of a stale lock, export or generated file
    check_locked_tools(workspace, flavor.name)  # python and uv come from the lock, never from this machine
    sources = CommonSources.find(workspace.root)
    epoch = resolve_epoch(workspace, source_date_epoch)
    cache = cache_dir or default_cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    # Staging next to the package cache, so that py-rattler hard-links rather than copies.
    work = Path(tempfile.mkdtemp(prefix=".oci-build-", dir=cache))
    try:
        store = BlobStore(work / "layout")
        base_image = import_base(base.absolute(), store)
        layers = [LayerInfo("base", d.digest, diff, d.size, d.media_type) for d, diff in _base_pairs(base_image)]
        descriptors = list(base_image.layers)
        directories = dict(base_image.directories)  # what an implicit parent directory must repeat

        history: list[str] = []
        layer_cache = LayerCache.beside(cache) if reuse_layers else None

        def add(
            role: str,
            entries: list[Entry],
            mtime: int,
            description: str,
            label: str = "",
            packages: tuple[str, ...] = (),
        ) -> None:
            key = layer_cache.key(entries, mtime, compression, directories) if layer_cache else None
            blob = layer_cache.reuse(key, entries, directories, work) if layer_cache and key else None
            if blob is None:
                blob = write_layer(entries, work, mtime, compression, directories)
                if layer_cache and key:
                    layer_cache.keep(key, blob)
            directories.update(blob.directories())
            descriptors.append(store.adopt(blob.path, blob.digest, blob.media_type))
            layers.append(
                LayerInfo(
                    role, blob.digest, blob.diff_id, blob.size, blob.media_type, label, packages, blob.uncompressed_size
                )
            )
            history.append(description)
            log.info("%s layer %s %s: %d entries, %d bytes", role, label, blob.digest, len(blob.members), blob.size)

        add(
            "common",
            common_entries(base_image, sources, epoch),
            epoch,
            "common layer: user scu, entrypoint, runner",
        )
        staged = stage_environment(workspace, flavor.name, work / "stage", cache, mirrors)
        every_flavor = flavor_records(workspace, [f.name for f in discover_flavors(workspace)])
        for layer in environment_layers(workspace, staged, every_flavor, epoch, verify=verify_files):
            add(layer.role, layer.entries, layer.mtime, layer.description, layer.label, layer.packages)
        environment_size = staged.disk_size()
        bytecode = runner_bytecode_entries(
            sources.runner, staged.prefix / "bin" / "python", python_version(staged.records), work
        )
        remove_tree(staged.stage)
        add("service", service_entries(spec) + bytecode, epoch, "service.cli/, the runner's byte-code and labels")
        labels = {**image_labels(workspace, spec, epoch), COMPRESSION_LABEL: compression_label(compression)}
        env = flavor_env(workspace, spec)
        config = store.put_json(
            image_config(base_image, flavor.name, labels, layers, history, epoch, env), MEDIA_TYPE_CONFIG
        )
        manifest = store.put_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_MANIFEST,
                "config": config.as_json(),
                "layers": [d.as_json() for d in descriptors],
            },
            MEDIA_TYPE_MANIFEST,
        )
        size = pack_layout(store, manifest, config, descriptors, spec.metadata.image, output, epoch)
    finally:
        remove_tree(work)
    return OciBuildResult(
        flavor=flavor.name,
        image=spec.metadata.image,
        output=output,
        manifest_digest=manifest.digest,
        config_digest=config.digest,
        layers=layers,
        archive_size=size,
        environment_size=environment_size,
        source_date_epoch=epoch,
        seconds=time.perf_counter() - started,
        labels=labels,
    )


def check_no_pypi(workspace: Workspace, flavor: str) -> None:
    """Refuse a flavor whose lock holds PyPI packages: the image would silently lack them.

    Installing them would need uv to write scripts naming the image's prefix from a staging
    folder, and layers of files no paths.json vouches for; neither exists yet (nor on the
    Docker path, whose @EXPLICIT files cannot name PyPI packages).
    """
    from cli.lockengine.pypi import locked_pypi

    entries = locked_pypi(workspace.root, workspace.lock_path, flavor, PLATFORM)
    if not entries:
        return
    names = sorted(f"{entry['name']} {entry.get('version', '')}".strip() for entry in entries)
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise UserError(
        f"flavor '{flavor}' locks {len(names)} PyPI package{'s' if len(names) > 1 else ''} ({shown}), "
        "which the OCI engine does not install: the image would lack them",
        path=workspace.lock_path,
        fix=f"make them conda dependencies of environment '{flavor}' in pixi.toml, or remove them from its "
        "pypi-dependencies, then run `python -m cli lock`",
    )


def _base_pairs(base: BaseImage) -> list[tuple[Descriptor, str]]:
    return list(zip(base.layers, base.diff_ids, strict=True))


def image_config(
    base: BaseImage,
    flavor: str,
    labels: dict[str, str],
    layers: list[LayerInfo],
    ours: list[str],
    epoch: int,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The image config; `ours` describes each layer added on the base, in order."""
    created = iso_time(epoch)
    history = list(base.history)
    if sum(1 for item in history if not item.get("empty_layer")) != len(base.layers):
        history = []  # a history that does not match the layers would confuse `docker history`
    if not history:
        history = [{"created": created, "created_by": f"{CREATED_BY}: base {base.description}"} for _ in base.layers]
    history += [{"created": created, "created_by": f"{CREATED_BY}: {description}"} for description in ours]
    inherited = {key: value for key, value in base.config.items() if key not in ("Env", "Labels")}
    return {
        "created": created,
        "architecture": ARCHITECTURE,
        "os": OS,
        "config": {
            **inherited,  # what FROM keeps of the base (exposed ports, volumes, stop signal, ...)
            "Env": image_env(base.env, flavor, DEFAULT_PATH, env),
            "Entrypoint": list(ENTRYPOINT),
            "Cmd": list(CMD),
            "WorkingDir": WORKING_DIR,
            "Labels": {**(base.config.get("Labels") or {}), **labels},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": history,
    }
