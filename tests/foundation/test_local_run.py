"""The README's path without Docker: `cli install` a flavor from the lock, then `cli run` a job on it.

`cli install` puts it at the workspace's `.envs/pytorch`, where `cli run pytorch` looks without being told.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from uv import find_uv_bin

from tests.runner.wheels import FakeWheel, build_wheel
from tests.support.cli import REPO_ROOT, run_cli
from tests.support.isolation import without_pip_and_uv_settings


@pytest.fixture()
def installed_pytorch(locked_workspace: Path, cuda_override: str) -> Path:
    prefix = locked_workspace / ".envs" / "pytorch"  # cli install's default place (cli/flavors.py default_prefix)
    result = run_cli("install", "pytorch", "--prefix", prefix, "--quiet", cwd=locked_workspace)
    assert result.returncode == 0, result.stderr
    return prefix


def runner_env(tmp_path: Path, wheels: Path | None = None) -> dict[str, str]:
    """The fixture wheels, offline; not this machine's pip.conf nor any PIP_/UV_ setting of the caller's."""
    env = without_pip_and_uv_settings()
    env.update(
        {
            "RUNNER_UV": find_uv_bin(),
            "RUNNER_CACHE_DIR": str(tmp_path / "overlays"),
            "UV_OFFLINE": "1",
            "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(tmp_path / "uv-cache")),  # the session's, if any
        }
    )
    if wheels is not None:
        env["UV_FIND_LINKS"] = str(wheels)
    return env


def run_job(
    workspace: Path, prefix: Path | None, job: Path, output: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    where = ["--prefix", prefix] if prefix is not None else []
    return run_cli("run", "pytorch", *where, "--input", job, "--output", output, cwd=workspace, inherit=env)


def test_shipped_example_runs_on_an_installed_flavor(locked_workspace: Path, installed_pytorch: Path, tmp_path: Path):
    output = tmp_path / "out"
    example = REPO_ROOT / "runner" / "examples" / "hello"
    result = run_job(locked_workspace, None, example, output, runner_env(tmp_path))  # found at .envs/pytorch
    assert result.returncode == 0, result.stderr
    assert "mean" in result.stdout
    with zipfile.ZipFile(output / "output_1.zip") as archive:
        assert "summary.json" in archive.namelist()
    summary = json.loads((output / "logs" / "run.json").read_text())
    assert summary["exit_code"] == 0
    assert summary["python"] == str(installed_pytorch / "bin" / "python")


def test_overlay_on_an_installed_flavor_and_the_duplicate_cuda_guard(
    locked_workspace: Path, installed_pytorch: Path, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels, FakeWheel("tinyplot", "1.0.0"))
    build_wheel(wheels, FakeWheel("nvidia-cudnn-cu12", "9.1.0.70"))
    job = tmp_path / "job" / "input_1"
    job.mkdir(parents=True)
    (job / "main.py").write_text("import tinyplot\nprint('tinyplot', tinyplot.VERSION)\n")
    (job / "requirements.txt").write_text("tinyplot==1.0.0\n")
    env = runner_env(tmp_path, wheels)
    ok = run_job(locked_workspace, installed_pytorch, job.parent, tmp_path / "out1", env)
    assert ok.returncode == 0, ok.stderr
    assert "tinyplot 1.0.0" in ok.stdout
    sources = json.loads((tmp_path / "out1" / "logs" / "run.json").read_text())["overlay"]["sources"]
    assert sources["constraints"] == [] and sources["extra_indexes"] == []  # no pip.conf of this machine's
    assert sources["find_links"] == [{"url": str(wheels), "from": "UV_FIND_LINKS"}]

    # the installed prefix's real conda-meta says cudnn comes from conda: a CUDA wheel is refused
    (job / "requirements.txt").write_text("nvidia-cudnn-cu12\n")
    (job / "main.py").write_text("open('started', 'w').write('yes')\n")
    refused = run_job(locked_workspace, installed_pytorch, job.parent, tmp_path / "out2", env)
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert "nvidia-cudnn-cu12" in last and "cudnn" in last.replace("nvidia-cudnn-cu12", "")
    assert not (job / "started").exists()
