"""`cli install`: exactly the lock's packages in a prefix, verified, never re-solved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.cli import error_line, run_cli
from tests.support.locks import lock_records


def locked(workspace: Path, environment: str) -> dict[str, tuple[str, str, str]]:
    return {
        name: (str(r.version), str(r.build), r.sha256.hex() if r.sha256 else "")
        for name, r in lock_records(workspace / "pixi.lock", environment).items()
    }


def prefix_records(prefix: Path) -> dict[str, tuple[str, str, str]]:
    result = {}
    for meta in (prefix / "conda-meta").glob("*.json"):
        data = json.loads(meta.read_text())
        result[data["name"]] = (data["version"], data["build"], data["sha256"])
    return result


def test_install_gives_exactly_the_locked_packages(locked_workspace: Path, tmp_path: Path, cuda_override: str) -> None:
    prefix = tmp_path / "env"
    result = run_cli("install", "pytorch", "--prefix", prefix, "--quiet", cwd=locked_workspace)
    assert result.returncode == 0, result.stderr
    assert prefix_records(prefix) == locked(locked_workspace, "pytorch")
    assert (prefix / "share" / "pytorch" / "README.txt").read_text().startswith("pytorch 2.5.0")
    assert (prefix / "bin" / "python").exists()


def test_install_of_a_cuda_flavor_needs_cuda_or_the_override(
    locked_workspace: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("CONDA_OVERRIDE_CUDA", raising=False)
    prefix = tmp_path / "env"
    result = run_cli(
        "install", "pytorch", "--prefix", prefix, "--quiet", cwd=locked_workspace, env={"CONDA_OVERRIDE_CUDA": ""}
    )
    assert result.returncode == 2
    assert "CONDA_OVERRIDE_CUDA" in error_line(result) and "__cuda" in error_line(result)
    assert not (prefix / "conda-meta").exists()


def test_install_refuses_a_lock_out_of_step_unless_frozen(
    locked_workspace: Path, tmp_path: Path, cuda_override: str
) -> None:
    manifest = locked_workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('uv = "*"', 'uv = "*"\npytest = "*"'))
    prefix = tmp_path / "env"
    result = run_cli("install", "pytorch", "--prefix", prefix, "--quiet", cwd=locked_workspace)
    assert result.returncode == 2
    line = error_line(result)
    assert "pixi.lock" in line and "out of step" in line and "pytest" in line and "--frozen" in line
    assert not prefix.exists()
    frozen = run_cli("install", "pytorch", "--prefix", prefix, "--quiet", "--frozen", cwd=locked_workspace)
    assert frozen.returncode == 0, frozen.stderr
    assert "pytest" not in prefix_records(prefix)


def test_install_verifies_sha256_of_every_archive(
    locked_workspace: Path, gpu_channel: Path, tmp_path: Path, cuda_override: str
) -> None:
    # a copy of the channel with one archive changed after locking
    channel = tmp_path / "tampered"
    shutil.copytree(gpu_channel, channel)
    archive = channel / "linux-64" / "numpy-2.0.0-py312_h0_0.conda"
    archive.write_bytes(archive.read_bytes() + b"\0")
    lock_path = locked_workspace / "pixi.lock"
    lock_path.write_text(lock_path.read_text().replace(str(gpu_channel), str(channel)))
    (locked_workspace / "pixi.toml").write_text(
        (locked_workspace / "pixi.toml").read_text().replace(gpu_channel.as_uri(), channel.as_uri())
    )
    prefix = tmp_path / "env"
    result = run_cli(
        "install", "pytorch", "--prefix", prefix, "--quiet", "--cache-dir", tmp_path / "cache", cwd=locked_workspace
    )
    assert result.returncode == 2
    assert "sha256 mismatch for numpy-2.0.0-py312_h0_0.conda" in error_line(result)
    assert not (prefix / "conda-meta").exists()
