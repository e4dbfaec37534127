"""Acceptance (issue 13, point 3): the OCI engine packs only bytes their package vouches for.

The staged environment hard-links its files from py-rattler's package cache, so editing a
staged file damages the cache entry, exactly as editing a file in an installed prefix does.
Here the damage is done after staging, so that the check while packing is the one that
catches it (`cli install`'s verification is the first guard, before linking).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.lockengine.manifest import load_workspace
from cli.oci.environment import stage_environment
from cli.oci.environment_layers import EnvironmentLayer, environment_layers, flavor_records
from cli.oci.tarball import Compression, UnvouchedFile, write_layer
from tests.oci.conftest import FLAVORS


def _layer_of(layers: list[EnvironmentLayer], package: str) -> EnvironmentLayer:
    return next(layer for layer in layers if package in layer.packages)


@pytest.mark.parametrize("damage", ["appended", "same size"])
def test_a_damaged_cache_file_stops_its_layer_with_one_line(oci_workspace: Path, tmp_path: Path, damage: str) -> None:
    workspace = load_workspace(oci_workspace)
    staged = stage_environment(workspace, "pytorch", tmp_path / "stage", tmp_path / "cache")
    target = staged.prefix / "share" / "cudnn" / "README.txt"
    assert target.stat().st_nlink > 1  # a hard link into the package cache
    text = target.read_bytes()
    target.write_bytes(text + b"tampered\n" if damage == "appended" else text.upper())
    layers = environment_layers(workspace, staged, flavor_records(workspace, FLAVORS), 0)
    out = tmp_path / "out"
    with pytest.raises(UnvouchedFile) as caught:
        write_layer(_layer_of(layers, "cudnn").entries, out, 0, Compression.zstd)
    line = caught.value.one_line()
    assert "\n" not in line
    assert line.startswith("/opt/conda/envs/flavor/share/cudnn/README.txt: is not the file of package cudnn-9.1.0-h1_0")
    assert "package cache entry is damaged" in line
    assert f"python -m cli cache verify --repair --cache-dir {tmp_path / 'cache'}" in line
    assert not list(out.iterdir())  # no half-written layer is left
    # The other layers pack: only the damaged package's layer is refused.
    write_layer(_layer_of(layers, "pytorch").entries, out, 0, Compression.zstd)


def test_a_damaged_source_of_a_rewritten_file_is_refused(oci_workspace: Path, tmp_path: Path) -> None:
    """prefixed-tool's files are rewritten (placeholder -> prefix): their cache originals must match paths.json."""
    workspace = load_workspace(oci_workspace)
    staged = stage_environment(workspace, "pytorch", tmp_path / "stage", tmp_path / "cache")
    (package,) = [p for p in staged.packages if p.name == "prefixed-tool"]
    (rewritten,) = [f for f in package.files if f.path == "etc/prefixed-tool.conf"]
    assert rewritten.source is not None and rewritten.source.is_file()
    assert rewritten.source.stat().st_ino != (staged.prefix / rewritten.path).stat().st_ino  # a copy, not a link
    with rewritten.source.open("a") as handle:
        handle.write("tampered\n")
    with pytest.raises(UnvouchedFile, match=r"is not the file of package prefixed-tool-1\.0\.0-h0_0") as caught:
        environment_layers(workspace, staged, flavor_records(workspace, FLAVORS), 0)
    assert caught.value.path == rewritten.source


def test_a_clean_environment_is_vouched_for_file_by_file(oci_workspace: Path, tmp_path: Path) -> None:
    workspace = load_workspace(oci_workspace)
    staged = stage_environment(workspace, "tensorflow", tmp_path / "stage", tmp_path / "cache")
    layers = environment_layers(workspace, staged, flavor_records(workspace, FLAVORS), 0)
    files = [
        entry for layer in layers if layer.role != "environment" for entry in layer.entries if entry.kind == "file"
    ]
    packaged = [entry for entry in files if "/conda-meta/" not in entry.path]  # conda-meta: written by the installer
    assert packaged and [entry.path for entry in packaged if entry.vouch is None] == []
    unvouched = [entry for entry in packaged if entry.vouch is not None and entry.vouch.sha256 is None]
    assert [entry.path for entry in unvouched] == []
    for layer in layers:
        write_layer(layer.entries, tmp_path / "out", layer.mtime, Compression.zstd)
