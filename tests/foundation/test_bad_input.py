"""Bad input: one line naming the file and the fix, a non-zero exit, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    for args in (("export",), ("install", "pytorch", "--prefix", str(tmp_path / "env")), ("audit", "sbom", "pytorch")):
        result = run_cli(*args, cwd=locked_workspace)
        assert result.returncode == 2, args
        line = error_line(result)
        assert str(lock) in line and "cannot read lock file" in line, line
    assert snapshot(locked_workspace) == before
    assert not (tmp_path / "env").exists()
    # locking is the repair: the broken lock is replaced, with a warning
    repaired = run_cli("lock", cwd=locked_workspace)
    assert repaired.returncode == 0, repaired.stderr
    assert "solving from scratch" in repaired.stderr
    assert run_cli("export", "--check", cwd=locked_workspace).returncode == 0


def test_lock_refuses_a_flavor_folder_without_environment(workspace: Path) -> None:
    extra = workspace / "flavors" / "jax"
    extra.mkdir()
    (extra / "metadata.yml").write_text((workspace / "flavors" / "pytorch" / "metadata.yml").read_text())
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 2
    assert "flavors/jax/metadata.yml" in error_line(result)
    assert not (workspace / "pixi.lock").exists()


def test_export_writes_nothing_when_a_flavor_is_not_locked(workspace: Path) -> None:
    assert run_cli("lock", "--environment", "pytorch", cwd=workspace).returncode == 0
    result = run_cli("export", cwd=workspace)
    assert result.returncode == 2
    assert "environment 'tensorflow' is not in the lock" in error_line(result)
    assert not (workspace / "envs").exists()
    check = run_cli("export", "--check", cwd=workspace)
    assert check.returncode == 1  # a finding, not bad input
    assert "envs/tensorflow" in check.stdout and "not in the lock" in check.stdout


def test_mirror_must_name_a_channel_in_use(workspace: Path, gpu_channel: Path) -> None:
    result = run_cli("lock", "--mirror", f"condaforge={gpu_channel.as_uri()}", cwd=workspace)
    assert result.returncode == 2
    line = error_line(result)
    assert "condaforge" in line and "no environment uses" in line
    assert not (workspace / "pixi.lock").exists()


def test_mirror_may_be_a_relative_folder(workspace: Path, gpu_channel: Path) -> None:
    import os
    import re

    manifest = workspace / "pixi.toml"
    manifest.write_text(re.sub(r'channels = \["[^"]+"\]', 'channels = ["conda-forge"]', manifest.read_text()))
    relative = os.path.relpath(gpu_channel, workspace)
    result = run_cli("lock", "--mirror", f"conda-forge={relative}", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "https://conda.anaconda.org/conda-forge/linux-64/pytorch-2.5.0" in (workspace / "pixi.lock").read_text()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'platforms = [{ platform = "linux-64", cuda = "12" }]',
            'platforms = ["linux-64", "bogus-99"]',
            "unknown platform 'bogus-99'",
        ),
        ('channels = ["', 'channels = [{ priority = "high", channel = "', "cannot read channel"),
        ('pytorch = ["pytorch", "cuda", "runner"]', 'pytorch = { features = "pytorch" }', "features must be a list"),
    ],
)
def test_manifest_shape_errors(workspace: Path, old: str, new: str, expected: str) -> None:
    manifest = workspace / "pixi.toml"
    text = manifest.read_text().replace(old, new)
    if "priority" in new:
        text = text.replace('/"]', '/" }]', 1).replace('"]\nplatforms', '" }]\nplatforms', 1)
    manifest.write_text(text)
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 2, result.stderr
    assert expected in error_line(result) and str(manifest) in error_line(result)
    assert "Traceback" not in result.stderr


def test_install_into_a_file_is_a_one_line_error(locked_workspace: Path, tmp_path: Path, cuda_override: str) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    result = run_cli("install", "pytorch", "--prefix", target, "--quiet", cwd=locked_workspace)
    assert result.returncode == 2
    assert "prefix is a file" in error_line(result) and "Traceback" not in result.stderr
    assert target.read_text() == "not a folder"


def test_unwritable_output_is_a_one_line_error(locked_workspace: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("audit", "sbom", "pytorch", "-o", blocker / "sbom.json", cwd=locked_workspace)
    assert result.returncode == 2
    assert error_line(result).startswith("error: ") and "Traceback" not in result.stderr


def test_library_messages_are_folded_into_one_line() -> None:
    from cli.errors import UserError

    error = UserError("cannot read base:\n- method gz: bad\n- method tar: bad", path="b.tar", fix="give a tar")
    assert error.one_line() == "b.tar: cannot read base: - method gz: bad - method tar: bad (give a tar)"


def test_no_workspace_here(tmp_path: Path) -> None:
    result = run_cli("lock", cwd=tmp_path)
    assert result.returncode == 2
    assert "no pixi.toml" in error_line(result)


def test_manifest_path_points_elsewhere(workspace: Path, tmp_path: Path) -> None:
    result = run_cli("lock", "--manifest-path", workspace, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (workspace / "pixi.lock").is_file()


def test_a_new_flavor_not_yet_locked_is_a_finding_not_an_error(locked_workspace: Path) -> None:
    manifest = locked_workspace / "pixi.toml"
    manifest.write_text(
        manifest.read_text().replace("[environments]", '[feature.jax.dependencies]\nnumpy = "*"\n\n[environments]')
        + 'jax = ["jax", "cuda", "runner"]\n'
    )
    folder = locked_workspace / "flavors" / "jax"
    folder.mkdir()
    (folder / "metadata.yml").write_text((locked_workspace / "flavors" / "pytorch" / "metadata.yml").read_text())
    result = run_cli("audit", "lock", cwd=locked_workspace)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "jax" in result.stdout and "missing" in result.stdout
