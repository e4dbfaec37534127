"""Layers are reused by what they are made of: a rebuild compresses nothing it made before, and reuses only
blobs that are what they claim. A package cache damaged after a build still gives the clean image: the kept
layer holds the bytes that were vouched for; without it, the verified install repairs the entry before
linking, and the image is the same again (the check while packing is the guard behind both,
tests/oci/test_vouched.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cli.lockengine.manifest import load_workspace
from cli.oci import OciBuildResult, build_oci_image
from tests.oci.conftest import make_rootfs


def _build(workspace: Path, root: Path, name: str, *, reuse: bool = True) -> OciBuildResult:
    return build_oci_image(
        load_workspace(workspace), "pytorch", make_rootfs(root / "base.tar"), root / f"{name}.tar",
        source_date_epoch=0, cache_dir=root / "cache", reuse_layers=reuse,
    )  # fmt: skip


def _cached_blobs(root: Path) -> list[Path]:
    return sorted((root / "cache" / "oci-layers").glob("*.blob"))


def test_a_rebuild_reuses_its_layers_and_survives_a_damaged_package_cache(oci_workspace: Path, tmp_path: Path) -> None:
    first = _build(oci_workspace, tmp_path, "first")
    blobs = _cached_blobs(tmp_path)
    assert len(blobs) == len({layer.digest for layer in first.layers[1:]})  # every layer made here, once
    for blob in blobs:
        assert f"sha256:{hashlib.sha256(blob.read_bytes()).hexdigest()}" in {layer.digest for layer in first.layers}

    damaged = tmp_path / "cache" / "pkgs" / "cudnn-9.1.0-h1_0" / "share" / "cudnn" / "README.txt"
    clean = damaged.read_text()
    damaged.write_text(clean + "tampered\n")
    again = _build(oci_workspace, tmp_path, "again")
    assert again.manifest_digest == first.manifest_digest  # the layer made from vouched bytes
    assert _cached_blobs(tmp_path) == blobs

    repacked = _build(oci_workspace, tmp_path, "repacked", reuse=False)
    assert repacked.manifest_digest == first.manifest_digest
    assert damaged.read_text() == clean  # repaired from its archive by the install, before it was linked


def test_a_cached_blob_that_is_not_what_it_claims_is_made_again(oci_workspace: Path, tmp_path: Path) -> None:
    first = _build(oci_workspace, tmp_path, "first")
    blob = max(_cached_blobs(tmp_path), key=lambda path: path.stat().st_size)
    blob.write_bytes(blob.read_bytes() + b"\0")
    again = _build(oci_workspace, tmp_path, "again")
    assert again.manifest_digest == first.manifest_digest
    assert f"sha256:{hashlib.sha256(blob.read_bytes()).hexdigest()}" in {layer.digest for layer in first.layers}
