"""Layers are reused by what they are made of: a rebuild compresses nothing it made before, and reuses only
blobs that are what they claim. A package cache damaged after a build still gives the clean image: the kept
layer holds the bytes that were vouched for; without it, the verified install repairs the entry before
linking, and the image is the same again (the check while packing is the guard behind both,
tests/oci/test_vouched.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cli.commands.cache import parse_size
from cli.lockengine.manifest import load_workspace
from cli.oci import OciBuildResult, build_oci_image, tarball
from cli.oci.layer_cache import writer_fingerprint
from cli.oci.tarball import Compression
from tests.oci.conftest import make_rootfs
from tests.support.cli import error_line, run_cli


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


def _records(root: Path) -> list[Path]:
    return sorted((root / "cache" / "oci-layers").glob("*.json"))


def _age(paths: list[Path], days: float) -> None:
    then = time.time() - days * 86400
    for path in paths:
        os.utime(path, (then, then))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda blob, record: blob.write_bytes(blob.read_bytes()[:-1]), id="truncated-blob"),
        pytest.param(lambda blob, record: record.write_text("{not json"), id="unreadable-record"),
        pytest.param(
            lambda blob, record: record.write_text(json.dumps({**json.loads(record.read_text()), "size": 1})),
            id="record-with-another-size",
        ),
    ],
)
def test_a_damaged_entry_is_removed_in_one_line_and_the_layer_made_again(
    oci_workspace: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path, Path], object]
) -> None:
    first = _build(oci_workspace, tmp_path, "first")
    blob = max(_cached_blobs(tmp_path), key=lambda path: path.stat().st_size)
    good = blob.read_bytes()
    damage(blob, blob.with_suffix(".json"))
    with caplog.at_level(logging.WARNING, logger="cli.oci.layer_cache"):
        again = _build(oci_workspace, tmp_path, "again")
    assert again.manifest_digest == first.manifest_digest
    warnings = [r.getMessage() for r in caplog.records if r.name == "cli.oci.layer_cache"]
    assert len(warnings) == 1 and str(blob) in warnings[0] and "made again" in warnings[0]
    assert blob.read_bytes() == good  # kept again, whole
    assert json.loads(blob.with_suffix(".json").read_text())["size"] == len(good)


def test_a_reuse_records_the_last_use_and_prune_removes_by_it(oci_workspace: Path, tmp_path: Path) -> None:
    _build(oci_workspace, tmp_path, "first")
    records = _records(tmp_path)
    _age(records, 40)
    _build(oci_workspace, tmp_path, "again")  # every layer reused: every entry used now
    assert all(time.time() - record.stat().st_mtime < 3600 for record in records)

    used, unused = records[:1], records[1:]
    _age(unused, 40)
    cache = tmp_path / "cache"
    listed = run_cli("cache", "prune", "--cache-dir", cache, "--older-than", "30", "--dry-run", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["dry_run"] and {e["key"] for e in report["removed"]} == {r.stem for r in unused}
    assert _records(tmp_path) == records  # a dry run removes nothing

    pruned = run_cli("cache", "prune", "--cache-dir", cache, "--older-than", "30", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert _records(tmp_path) == used and [b.stem for b in _cached_blobs(tmp_path)] == [r.stem for r in used]
    assert pruned.stdout.count("removed layer ") == len(unused)
    assert f"{len(unused)} layers (" in pruned.stdout.splitlines()[-1]
    assert _build(oci_workspace, tmp_path, "rebuilt").manifest_digest  # a pruned cache is only slower


def test_prune_by_size_removes_the_least_recently_used_first(oci_workspace: Path, tmp_path: Path) -> None:
    _build(oci_workspace, tmp_path, "first")
    by_use = _records(tmp_path)
    for days, record in enumerate(reversed(by_use)):  # the first record is the oldest
        _age([record], days + 1)
    newest = by_use[-1]
    size = newest.stat().st_size + newest.with_suffix(".blob").stat().st_size
    pruned = run_cli("cache", "prune", "--cache-dir", tmp_path / "cache", "--max-size", str(size), cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert _records(tmp_path) == [newest]
    assert run_cli("cache", "prune", "--cache-dir", tmp_path / "cache", "--max-size", "0", cwd=tmp_path).returncode == 0
    assert _records(tmp_path) == [] and _cached_blobs(tmp_path) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), "error: cache prune needs --older-than DAYS or --max-size SIZE (e.g. --older-than 30 or --max-size 20G)"),
        (("--max-size", "12X"), "error: --max-size '12X' is not a size (write e.g. 20G, 500M, 1.5GiB or 1000000"),
        (("--older-than", "-1"), "error: --older-than -1: days cannot be negative"),
    ],
)
def test_prune_refuses_bad_input_in_one_line(tmp_path: Path, arguments: tuple[str, ...], message: str) -> None:
    refused = run_cli("cache", "prune", "--cache-dir", tmp_path, *arguments, cwd=tmp_path)
    assert refused.returncode == 2
    assert error_line(refused).startswith(message)


@pytest.mark.parametrize(
    ("text", "size"), [("1000", 1000), ("20G", 20 * 10**9), ("500MB", 5 * 10**8), ("1.5GiB", 3 << 29)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_other_compressor_parameters_never_reuse_a_kept_layer(
    oci_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache's format is derived from what makes the bytes: a new zstd level gives new keys, not stale blobs."""
    first = _build(oci_workspace, tmp_path, "first")
    before = writer_fingerprint(Compression.zstd)
    monkeypatch.setattr(tarball, "ZSTD_LEVEL", 9)
    writer_fingerprint.cache_clear()
    try:
        assert writer_fingerprint(Compression.zstd) != before
        again = _build(oci_workspace, tmp_path, "again")
    finally:
        writer_fingerprint.cache_clear()
    made = [layer for layer in again.layers if layer.role != "base"]
    assert all(layer.digest not in {old.digest for old in first.layers} for layer in made)
    assert all(layer.diff_id in {old.diff_id for old in first.layers} for layer in made)  # the same tars
    assert writer_fingerprint(Compression.zstd) != writer_fingerprint(Compression.gzip)
