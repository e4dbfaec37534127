"""Acceptance: the same lock gives the same image, byte for byte, whatever the folder, mtimes, umask or caches.

Two builds of one flavor in two temporary folders: the second checkout has every file's
mtime changed and group/other permissions removed (a checkout under umask 077), is built
under umask 077 and with a cold package cache of its own. The base rootfs is made in the
test (the same bytes each time). Both archives must have the same manifest digest, and
indeed the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cli.lockengine.manifest import load_workspace
from cli.oci import build_oci_image, resolve_epoch
from cli.oci.service import iso_time
from tests.oci.conftest import Built, copy_workspace, json_blob, make_rootfs, read_layout


def _scramble(root: Path) -> None:
    """Other mtimes and no group/other permission bits, as a different checkout would have."""
    for number, path in enumerate(sorted(root.rglob("*"))):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o777
        path.chmod(mode & 0o700)
        os.utime(path, (1_000_000 + number, 1_600_000_000 + 7 * number))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_builds_in_different_folders_are_identical(
    tmp_path: Path, oci_template: Path, built_images: dict[str, Built], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first_root, second_root = tmp_path / "first", tmp_path / "second"
    first_ws = copy_workspace(oci_template, first_root / "checkout")
    second_ws = copy_workspace(oci_template, second_root / "somewhere" / "else" / "checkout")
    _scramble(second_ws)

    first = build_oci_image(
        load_workspace(first_ws),
        "pytorch",
        make_rootfs(first_root / "base.tar"),
        first_root / "image.tar",
        cache_dir=first_root / "cache",
    )
    old_umask = os.umask(0o077)
    try:
        second = build_oci_image(
            load_workspace(second_ws),
            "pytorch",
            make_rootfs(second_root / "base.tar"),
            second_root / "out" / "image.tar",
            cache_dir=second_root / "cache",
        )
    finally:
        os.umask(old_umask)

    assert first.manifest_digest == second.manifest_digest
    assert [layer.digest for layer in first.layers] == [layer.digest for layer in second.layers]
    assert _sha256(first.output) == _sha256(second.output)
    # ... and the same as the session's build of the same lock in yet another folder.
    assert built_images["pytorch"].result.manifest_digest == first.manifest_digest
    assert first.source_date_epoch == 0  # not committed: 0, never a file's mtime
    assert (first.output.stat().st_mode & 0o777) == (second.output.stat().st_mode & 0o777) == 0o644


def test_source_date_epoch_sets_every_time(oci_workspace: Path, tmp_path: Path) -> None:
    result = build_oci_image(
        load_workspace(oci_workspace),
        "tensorflow",
        make_rootfs(tmp_path / "base.tar"),
        tmp_path / "image.tar",
        source_date_epoch=1_750_000_000,
        cache_dir=tmp_path / "cache",
    )
    files = read_layout(tmp_path / "image.tar")
    manifest = json_blob(files, result.manifest_digest)
    config = json_blob(files, manifest["config"]["digest"])
    created = iso_time(1_750_000_000)
    assert created == "2025-06-15T15:06:40Z"
    assert config["created"] == created
    assert config["config"]["Labels"]["org.opencontainers.image.created"] == created
    assert {entry["created"] for entry in config["history"]} == {created}


def _git(root: Path, *args: str, env: dict[str, str] | None = None) -> None:
    import subprocess

    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env={**os.environ, **(env or {})})


def test_epoch_defaults_to_the_commit_time_of_the_lock(
    oci_workspace: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    workspace = load_workspace(oci_workspace)
    assert resolve_epoch(workspace) == 0
    assert "SOURCE_DATE_EPOCH defaults to 0" in caplog.text

    _git(oci_workspace, "init", "-q")
    _git(oci_workspace, "add", "pixi.toml")
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t"}
    identity["GIT_COMMITTER_EMAIL"] = "t@example.org"
    _git(oci_workspace, "commit", "-q", "-m", "manifest", env={**identity, "GIT_COMMITTER_DATE": "@1700000000 +0000"})
    assert resolve_epoch(workspace) == 0  # the lock is not committed yet
    _git(oci_workspace, "add", "pixi.lock")
    _git(oci_workspace, "commit", "-q", "-m", "lock", env={**identity, "GIT_COMMITTER_DATE": "@1710000000 +0000"})
    (oci_workspace / "pixi.lock").touch()  # an mtime never counts
    assert resolve_epoch(workspace) == 1_710_000_000

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1720000000")
    assert resolve_epoch(workspace) == 1_720_000_000
    assert resolve_epoch(workspace, 5) == 5
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    from cli.errors import UserError

    with pytest.raises(UserError, match="SOURCE_DATE_EPOCH='yesterday' is not a number"):
        resolve_epoch(workspace)
