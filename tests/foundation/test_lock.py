"""`cli lock`: real solves on the fixture channel, CUDA as declared, byte-stable output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import rattler
from rattler import LockFile

from tests.support.cli import error_line, run_cli
from tests.support.locks import lock_records


def locked_builds(lock_path: Path, environment: str) -> dict[str, str]:
    return {name: str(r.build) for name, r in lock_records(lock_path, environment).items()}


def test_lock_picks_cuda_builds_when_platform_declares_cuda(workspace: Path) -> None:
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 0, result.stderr
    pytorch = locked_builds(workspace / "pixi.lock", "pytorch")
    assert pytorch["pytorch"].startswith("cuda124")
    assert pytorch["torchvision"].startswith("cuda124")
    assert "cuda-version" in pytorch and "cudnn" in pytorch
    tensorflow = locked_builds(workspace / "pixi.lock", "tensorflow")
    assert tensorflow["tensorflow"].startswith("cuda120")
    # pixi lock format 7 records the assumed virtual packages per platform
    platform = LockFile.from_path(workspace / "pixi.lock").platforms()[0]
    assert "__cuda=12" in platform.virtual_packages


@pytest.mark.parametrize("where", ["workspace", "feature"])
def test_lock_reads_legacy_system_requirements_tables(
    workspace: Path, tmp_path: Path, cuda_override: str, where: str
) -> None:
    manifest = workspace / "pixi.toml"
    text = manifest.read_text().replace(
        'platforms = [{ platform = "linux-64", cuda = "12" }]', 'platforms = ["linux-64"]'
    )
    if where == "workspace":
        text = text.replace(
            "[feature.cuda.dependencies]", '[system-requirements]\ncuda = "12"\n\n[feature.cuda.dependencies]'
        )
    else:
        text = text.replace(
            "[feature.cuda.dependencies]",
            '[feature.cuda.system-requirements]\ncuda = "12"\n\n[feature.cuda.dependencies]',
        )
    manifest.write_text(text)
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert locked_builds(workspace / "pixi.lock", "pytorch")["pytorch"].startswith("cuda")
    # pixi migrates [system-requirements] into platforms: the environments that carry them get
    # their own platform (with __cuda) in the lock, those that do not keep plain linux-64
    lock = LockFile.from_path(workspace / "pixi.lock")
    pytorch_env = lock.environment("pytorch")
    assert pytorch_env is not None
    (pytorch_platform,) = pytorch_env.platforms()
    assert "__cuda=12" in pytorch_platform.virtual_packages
    installed = run_cli("install", "pytorch", "--prefix", tmp_path / "env", "--quiet", cwd=workspace)
    assert installed.returncode == 0, installed.stderr
    assert run_cli("lock", "--check", cwd=workspace).returncode == 0


def test_lock_without_cuda_fails_clearly_when_a_cuda_build_is_required(workspace: Path) -> None:
    manifest = workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('[{ platform = "linux-64", cuda = "12" }]', '["linux-64"]'))
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 2
    line = error_line(result)
    assert str(manifest) in line and "cannot solve environment 'pytorch' for linux-64" in line
    assert "__cuda" in result.stderr  # the solver's own explanation follows the error line
    assert not (workspace / "pixi.lock").exists()


def test_lock_without_cuda_falls_back_to_cpu_only_when_allowed(workspace: Path) -> None:
    manifest = workspace / "pixi.toml"
    text = manifest.read_text().replace('[{ platform = "linux-64", cuda = "12" }]', '["linux-64"]')
    text = text.replace('pytorch = { version = "*", build = "cuda*" }', 'pytorch = "*"')
    text = text.replace('tensorflow = { version = "*", build = "cuda*" }', 'tensorflow = "*"')
    manifest.write_text(text.replace('cuda-version = "12.*"\n', ""))
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert locked_builds(workspace / "pixi.lock", "pytorch")["pytorch"].startswith("cpu_")


def test_gpu_variant_guard_refuses_a_cpu_build_in_a_cuda_environment(workspace: Path) -> None:
    manifest = workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('build = "cuda*"', 'build = "cpu*"', 1))
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 2
    line = error_line(result)
    assert "declares CUDA" in line and "pytorch 2.5.0 cpu_mkl_py312_h1_0" in line
    assert not (workspace / "pixi.lock").exists()


def test_lock_twice_is_byte_identical_and_check_follows_the_manifest(workspace: Path) -> None:
    assert run_cli("lock", cwd=workspace).returncode == 0
    first = (workspace / "pixi.lock").read_bytes()
    (workspace / "pixi.lock").unlink()
    assert run_cli("lock", cwd=workspace).returncode == 0
    assert (workspace / "pixi.lock").read_bytes() == first
    assert run_cli("lock", cwd=workspace).returncode == 0
    assert (workspace / "pixi.lock").read_bytes() == first

    check = run_cli("lock", "--check", cwd=workspace)
    assert check.returncode == 0, check.stderr

    manifest = workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('uv = "*"', 'uv = "*"\npytest = "*"'))
    check = run_cli("lock", "--check", "--json", cwd=workspace)
    assert check.returncode == 1
    assert json.loads(check.stdout)["verdict"] == "stale"
    assert (workspace / "pixi.lock").read_bytes() == first  # --check writes nothing


def test_lock_keeps_the_locked_version_until_asked_to_update(workspace: Path, gpu_channel: Path) -> None:
    manifest = workspace / "pixi.toml"
    manifest.write_text(
        manifest.read_text()
        .replace('build = "cuda*" }', 'build = "cuda*" }\n', 1)
        .replace('pytorch = { version = "*"', 'pytorch = { version = "2.4.*"', 1)
    )
    assert run_cli("lock", cwd=workspace).returncode == 0
    manifest.write_text(manifest.read_text().replace('version = "2.4.*"', 'version = "*"'))
    assert run_cli("lock", cwd=workspace).returncode == 0
    lock_text = (workspace / "pixi.lock").read_text()
    assert "pytorch-2.4.0-cuda124" in lock_text  # still satisfied: kept, as pixi does
    assert run_cli("lock", "--update", cwd=workspace).returncode == 0
    assert "pytorch-2.5.0-cuda124" in (workspace / "pixi.lock").read_text()


def test_lock_one_environment_keeps_the_others(workspace: Path) -> None:
    assert run_cli("lock", "--environment", "pytorch", cwd=workspace).returncode == 0
    lock = LockFile.from_path(workspace / "pixi.lock")
    assert [name for name, _ in lock.environments()] == ["pytorch"]
    assert run_cli("lock", cwd=workspace).returncode == 0
    before = locked_builds(workspace / "pixi.lock", "tensorflow")
    assert run_cli("lock", "-e", "pytorch", "--update", cwd=workspace).returncode == 0
    assert locked_builds(workspace / "pixi.lock", "tensorflow") == before


def test_mirror_solves_from_a_copy_but_records_the_canonical_channel(workspace: Path, gpu_channel: Path) -> None:
    manifest = workspace / "pixi.toml"
    manifest.write_text(re.sub(r'channels = \["[^"]+"\]', 'channels = ["conda-forge"]', manifest.read_text()))
    result = run_cli("lock", "--mirror", f"conda-forge={gpu_channel.as_uri()}", "--json", cwd=workspace)
    assert result.returncode == 0, result.stderr
    text = (workspace / "pixi.lock").read_text()
    assert "url: https://conda.anaconda.org/conda-forge/" in text
    assert "conda: https://conda.anaconda.org/conda-forge/linux-64/pytorch-2.5.0-cuda124_py312_h2_300.conda" in text
    assert gpu_channel.as_uri() not in text and str(gpu_channel) not in text


def test_written_lock_reads_back_with_rattler(workspace: Path, gpu_channel: Path) -> None:
    assert run_cli("lock", cwd=workspace).returncode == 0
    lock = LockFile.from_path(workspace / "pixi.lock")
    platform = next(p for p in lock.platforms() if str(p.subdir) == "linux-64")
    env = lock.environment("pytorch")
    assert env is not None
    records = env.conda_repodata_records_for_platform(platform) or []
    on_disk = {p.name for p in (gpu_channel / "linux-64").glob("*.conda")} | {
        p.name for p in (gpu_channel / "noarch").glob("*.conda")
    }
    assert records and all(r.file_name in on_disk for r in records)
    assert all(r.sha256 is not None for r in records)
    assert isinstance(records[0], rattler.RepoDataRecord)


def test_feature_channels_come_first_and_win_under_strict_priority(workspace: Path, tmp_path: Path) -> None:
    from tests.support.channel import FakePackage, build_channel

    extra = build_channel(
        tmp_path / "nightly",
        [
            FakePackage(
                "pytorch",
                "2.6.0",
                "cuda124_py312_h9_300",
                build_number=300,
                depends=["python >=3.12,<3.13", "numpy >=1.23", "__cuda", "cuda-version >=12.4,<13"],
            )
        ],
    )
    manifest = workspace / "pixi.toml"
    manifest.write_text(
        manifest.read_text().replace(
            "[feature.pytorch.dependencies]",
            f'[feature.pytorch]\nchannels = ["{extra.as_uri()}"]\n\n[feature.pytorch.dependencies]',
        )
    )
    result = run_cli("lock", cwd=workspace)
    assert result.returncode == 0, result.stderr
    lock = LockFile.from_path(workspace / "pixi.lock")
    pytorch_env = lock.environment("pytorch")
    tensorflow_env = lock.environment("tensorflow")
    assert pytorch_env is not None and tensorflow_env is not None
    assert str(pytorch_env.channels()[0]).rstrip("/") == extra.as_uri()
    assert len(tensorflow_env.channels()) == 1
    text = (workspace / "pixi.lock").read_text()
    assert "pytorch-2.6.0-cuda124_py312_h9_300.conda" in text
    # torchvision needs `pytorch * cuda*` and only exists in the workspace channel: still solved
    assert "torchvision-0.20.0-cuda124" in text


def test_pixi_engine_needs_pixi(workspace: Path) -> None:
    import os

    result = run_cli(
        "lock", "--engine", "pixi", cwd=workspace, env={"PATH": os.path.dirname(__import__("sys").executable)}
    )
    assert result.returncode == 2
    assert "pixi executable" in error_line(result)


def test_a_feature_for_the_bare_subdir_does_not_get_the_cuda_platform_beside_it(
    tmp_path: Path, gpu_channel: Path
) -> None:
    """Two platforms of one subdir, as the committed pixi.toml has: the CPU environment is solved for
    the bare `linux-64` only (pixi's rule since prefix-dev/pixi#6493), the flavor for the CUDA one."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "pixi.toml").write_text(
        "[workspace]\n"
        'name = "two-linux"\n'
        f'channels = ["{gpu_channel.as_uri()}"]\n'
        'platforms = [{ platform = "linux-64", cuda = "12" }, "linux-64"]\n\n'
        '[feature.gpu]\nplatforms = ["linux-64-cuda-12"]\n\n'
        '[feature.gpu.dependencies]\npytorch = "*"\n\n'
        '[feature.cpu]\nplatforms = ["linux-64"]\n\n'
        '[feature.cpu.dependencies]\npython = "3.12.*"\n\n'
        '[environments]\ngpu = ["gpu"]\ncpu = ["cpu"]\n'
    )
    result = run_cli("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    lock = LockFile.from_path(root / "pixi.lock")
    by_name = {p.name: p for p in lock.platforms()}

    def platforms_of(environment: str) -> dict[str, list[str]]:
        env = lock.environment(environment)
        assert env is not None
        return {p.name: sorted(by_name[p.name].virtual_packages) for p in env.platforms()}

    (cpu,) = platforms_of("cpu").items()
    assert cpu[0] == "linux-64" and not any(v.startswith("__cuda") for v in cpu[1])
    (gpu,) = platforms_of("gpu").items()
    assert gpu[0] == "p1" and "__cuda=12" in gpu[1]
    assert locked_builds(root / "pixi.lock", "gpu")["pytorch"].startswith("cuda124")
    assert run_cli("lock", "--check", cwd=root).returncode == 0
