"""Bad input: one line naming the file and the fix, a non-zero exit, nothing written."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import error_line, run_cli


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_malformed_pixi_toml(workspace: Path) -> None:
    manifest = workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace("[feature.cuda.dependencies]", "[feature.cuda.dependencies"))
    before = snapshot(workspace)
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 2
    line = error_line(result)
    assert str(manifest) in line and "not valid TOML" in line
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(workspace) == before


def test_unknown_environment(workspace: Path) -> None:
    before = snapshot(workspace)
    result = run_cli("lock", "--environment", "jax", cwd=workspace)
    assert result.returncode == 2
    line = error_line(result)
    assert "unknown environment 'jax'" in line and "pixi.toml" in line and "known environments" in line
    assert snapshot(workspace) == before


def test_flavor_folder_without_environment(locked_workspace: Path) -> None:
    extra = locked_workspace / "flavors" / "jax"
    extra.mkdir()
    (extra / "metadata.yml").write_text((locked_workspace / "flavors" / "pytorch" / "metadata.yml").read_text())
    before = snapshot(locked_workspace)
    result = run_cli("export", cwd=locked_workspace)
    assert result.returncode == 2
    line = error_line(result)
    assert "flavors/jax/metadata.yml" in line and "no environment 'jax'" in line
    assert snapshot(locked_workspace) == before


def test_environment_without_flavor_folder(locked_workspace: Path) -> None:
    import shutil

    shutil.rmtree(locked_workspace / "flavors" / "tensorflow")
    result = run_cli("export", cwd=locked_workspace)
    assert result.returncode == 2
    assert "environment 'tensorflow' has no flavor folder" in error_line(result)


def test_unsatisfiable_specs(workspace: Path) -> None:
    manifest = workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('torchvision = "*"', 'torchvision = ">=9"'))
    before = snapshot(workspace)
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 2
    line = error_line(result)
    assert str(manifest) in line and "cannot solve environment 'pytorch' for linux-64" in line
    assert "torchvision >=9" in result.stderr
    assert snapshot(workspace) == before


def test_invalid_spec(workspace: Path) -> None:
    manifest = workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('torchvision = "*"', 'torchvision = ">=>1"'))
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 2
    assert "torchvision" in error_line(result) and "not a valid spec" in error_line(result)


def test_corrupted_pixi_lock(locked_workspace: Path, tmp_path: Path) -> None:
    lock = locked_workspace / "pixi.lock"
    lock.write_text(lock.read_text()[: len(lock.read_text()) // 2] + "\n  - : [broken\n")
    before = snapshot(locked_workspace)
    for args in (("lock",), ("export",), ("install", "pytorch", "--prefix", str(tmp_path / "env"))):
        result = run_cli(*args, cwd=locked_workspace)
        assert result.returncode == 2, args
        line = error_line(result)
        assert str(lock) in line and "cannot read lock file" in line, line
    assert snapshot(locked_workspace) == before
    assert not (tmp_path / "env").exists()


def test_no_workspace_here(tmp_path: Path) -> None:
    result = run_cli("lock", cwd=tmp_path)
    assert result.returncode == 2
    assert "no pixi.toml" in error_line(result)


def test_manifest_path_points_elsewhere(workspace: Path, tmp_path: Path) -> None:
    result = run_cli("lock", "--manifest-path", workspace, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (workspace / "pixi.lock").is_file()
