"""Issue 13: a damaged package cache fed to `cli build --engine oci` gives the clean image, byte for byte.

The OCI engine stages the flavor through the verified install: every cache entry is checked
against its paths.json and a damaged one re-extracted from its sha256-checked archive before
anything is linked into the stage, so no damaged byte reaches a layer. Also: `--mirror` on
`build --engine oci`, with the same meaning as on `lock` and `install`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.oci.conftest import Built, make_rootfs
from tests.support.cli import run_cli

DAMAGE = {  # cache entry → file: a plain file, and one whose prefix placeholder the installer rewrites
    "pytorch-2.5.0-cuda124_py312_h2_300": "share/pytorch/README.txt",
    "prefixed-tool-1.0.0-h0_0": "etc/prefixed-tool.conf",
}


def build(
    workspace: Path, base: Path, output: Path, cache: Path, *args: str | Path
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "build", "pytorch", "--engine", "oci", "--base", base, "-o", output, "--json", *args,
        cwd=workspace,
        env={"RATTLER_CACHE_DIR": str(cache), "CONDA_OVERRIDE_CUDA": "12.4"},
    )  # fmt: skip


def digest(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["manifest_digest"])


def test_a_damaged_cache_gives_the_clean_digest(
    oci_workspace: Path, built_images: dict[str, Built], tmp_path: Path
) -> None:
    clean = built_images["pytorch"].result.manifest_digest  # built with a cache of its own
    base = make_rootfs(tmp_path / "base.tar")
    cache = tmp_path / "cache"
    assert digest(build(oci_workspace, base, tmp_path / "first.tar", cache)) == clean

    for entry, relative in DAMAGE.items():
        with (cache / "pkgs" / entry / relative).open("a") as handle:
            handle.write("edited while debugging\n")
    damaged = run_cli("cache", "verify", "--cache-dir", cache, "--json", cwd=tmp_path)
    assert damaged.returncode == 1
    assert {d["entry"] for d in json.loads(damaged.stdout)["damaged"]} == set(DAMAGE)

    second = build(oci_workspace, base, tmp_path / "second.tar", cache)
    assert digest(second) == clean
    repairs = [line for line in second.stderr.splitlines() if "re-extracting" in line]
    assert len(repairs) == len(DAMAGE) and all(any(e in line for line in repairs) for e in DAMAGE)
    assert (tmp_path / "second.tar").read_bytes() == built_images["pytorch"].archive.read_bytes()
    assert run_cli("cache", "verify", "--cache-dir", cache, cwd=tmp_path).returncode == 0


def test_build_fetches_from_a_mirror(oci_workspace: Path, built_images: dict[str, Built], tmp_path: Path) -> None:
    lock = (oci_workspace / "pixi.lock").read_text()
    channel_url = next(line.split("url: ", 1)[1] for line in lock.splitlines() if "url: file://" in line)
    channel = Path(channel_url.removeprefix("file://").rstrip("/"))
    mirror = tmp_path / "mirror"
    shutil.copytree(channel, mirror)
    for archive in (mirror / "linux-64").glob("*.conda"):  # prove the mirror is read: the lock's folder is not
        archive.rename(archive.with_suffix(".moved"))
    base = make_rootfs(tmp_path / "base.tar")
    missing = build(
        oci_workspace, base, tmp_path / "none.tar", tmp_path / "cache-a", "--mirror", f"{channel_url}={mirror}"
    )
    assert missing.returncode == 2
    assert str(mirror) in missing.stderr and "cannot extract" in missing.stderr
    for archive in (mirror / "linux-64").glob("*.moved"):
        archive.rename(archive.with_suffix(".conda"))
    result = build(
        oci_workspace, base, tmp_path / "image.tar", tmp_path / "cache-b", "--mirror", f"{channel_url}={mirror}"
    )
    assert digest(result) == built_images["pytorch"].result.manifest_digest
    docker = run_cli("build", "pytorch", "--dry-run", "--mirror", f"{channel_url}={mirror}", cwd=oci_workspace)
    assert docker.returncode == 2 and "--engine oci only" in docker.stderr
