"""The committed pixi.lock and envs/: every environment on every platform, re-solved byte for byte from the subset.

The conda parts are solved again here, offline, from the conda-forge subset in
tests/data/channels; the PyPI part (the dev environment's) was resolved from PyPI when the lock
was written and is kept, since it still satisfies pixi.toml (PyPI is not reachable from tests).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli.lockengine.lockfile import read_lock_data
from cli.lockengine.manifest import load_workspace
from tests.support.cli import REPO_ROOT, run_cli
from tests.support.locks import lock_records

SUBSET = REPO_ROOT / "tests" / "data" / "channels" / "conda-forge"
WORKSPACE_FILES = ("pixi.toml", "pixi.lock", "pyproject.toml", "conda-pypi-map.json", "README.md")


@pytest.fixture()
def repository_copy(tmp_path: Path) -> Path:
    """The committed workspace (manifest, lock, flavors, the project's pyproject.toml) in a scratch folder."""
    target = tmp_path / "repo"
    target.mkdir()
    for name in WORKSPACE_FILES:
        shutil.copy(REPO_ROOT / name, target / name)
    shutil.copytree(REPO_ROOT / "flavors", target / "flavors")
    return target


def test_committed_lock_is_fresh() -> None:
    result = run_cli("lock", "--check", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_committed_lock_holds_every_environment_on_every_platform() -> None:
    workspace = load_workspace(REPO_ROOT)
    data = read_lock_data(REPO_ROOT / "pixi.lock")
    assert (
        sorted(data.environments)
        == sorted(workspace.environment_names())
        == ["default", "dev", "pytorch", "tensorflow"]
    )
    subdirs = {p.name: p.subdir for p in data.platforms}
    for name in workspace.environment_names():
        expected = sorted(p.subdir for p in workspace.resolve(name).platforms)
        assert sorted(subdirs[p] for p in data.environments[name].packages) == expected
    assert sorted(subdirs.values()) == ["linux-64", "linux-64", "osx-arm64"]  # linux-64 with CUDA and without


def test_the_cli_environment_needs_no_gpu_and_the_flavors_a_cuda_12_driver() -> None:
    """dev/default (what `pixi run audit` and `pixi shell` use) sit on platforms without `__cuda`, so
    pixi installs them on a maintainer's CPU-only machine; the flavors sit on linux-64 with `__cuda=12`."""
    data = read_lock_data(REPO_ROOT / "pixi.lock")
    platforms = {p.name: p for p in data.platforms}

    def cuda_of(environment: str) -> dict[str, list[str]]:
        return {
            platforms[name].subdir: [v for v in platforms[name].virtual_packages if v.startswith("__cuda")]
            for name in data.environments[environment].packages
        }

    for environment in ("default", "dev"):
        assert cuda_of(environment) == {"linux-64": [], "osx-arm64": []}
    for flavor in ("pytorch", "tensorflow"):
        assert cuda_of(flavor) == {"linux-64": ["__cuda=12"]}


def test_committed_lock_is_re_solved_byte_for_byte_from_the_subset(repository_copy: Path) -> None:
    before = (repository_copy / "pixi.lock").read_bytes()
    result = run_cli("lock", "--mirror", f"conda-forge={SUBSET.as_uri()}", cwd=repository_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("unchanged ")
    assert (repository_copy / "pixi.lock").read_bytes() == before


def test_flavors_are_re_solved_from_scratch_to_the_same_bytes(repository_copy: Path) -> None:
    """No locked versions as preferences: the subset alone gives the committed flavors."""
    before = (repository_copy / "pixi.lock").read_bytes()
    result = run_cli(
        "lock",
        "-e",
        "pytorch",
        "-e",
        "tensorflow",
        "--update",
        "--mirror",
        f"conda-forge={SUBSET.as_uri()}",
        cwd=repository_copy,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repository_copy / "pixi.lock").read_bytes() == before


def test_committed_exports_match_the_committed_lock() -> None:
    result = run_cli("export", "--check", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_lock_holds_gpu_builds_from_conda_forge() -> None:
    for flavor, package in (("pytorch", "pytorch"), ("tensorflow", "tensorflow")):
        records = lock_records(REPO_ROOT / "pixi.lock", flavor)
        assert str(records[package].build).startswith("cuda")
        assert str(records["cuda-version"].version).startswith("12.")
        assert "packaging" in records  # the runner imports it
        assert "uv" in records
        assert all(r.url.startswith("https://conda.anaconda.org/conda-forge/") for r in records.values())
        assert all(r.sha256 is not None for r in records.values())


def test_dev_environment_is_this_project_from_pypi_over_conda_python() -> None:
    data = read_lock_data(REPO_ROOT / "pixi.lock")
    for platform in data.environments["dev"].packages:
        entries = data.environment_packages("dev", platform) or []
        conda = {str(e["conda"]).rsplit("/", 1)[-1].rsplit("-", 2)[0] for e in entries if "conda" in e}
        pypi = {str(e["name"]): e for e in entries if "pypi" in e}
        assert {"python", "pip", "uv"} <= conda
        assert pypi["osparc-ml-runners"]["pypi"] == "./"
        assert {"py-rattler", "typer", "pytest", "ruff", "mypy"} <= set(pypi)
        assert "uv" not in pypi  # conda's uv is PyPI's uv (conda-pypi-map.json)
        assert all(e.get("sha256") for name, e in pypi.items() if name != "osparc-ml-runners")


def test_subset_provenance_is_shipped() -> None:
    assert (SUBSET.parent / "PROVENANCE.md").is_file()
    for subdir in ("linux-64", "noarch", "osx-arm64"):
        assert (SUBSET / subdir / "repodata.json").is_file()


def test_repository_audits_are_clean() -> None:
    """On a fresh clone: lock --check, audit lock (every environment, as `pixi run audit`) and audit cuda exit 0."""
    result = run_cli("audit", "lock", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for flavor in ("pytorch", "tensorflow"):
        cuda = run_cli("audit", "cuda", flavor, cwd=REPO_ROOT)
        assert cuda.returncode == 0, cuda.stdout + cuda.stderr
        driver = run_cli("audit", "cuda", flavor, "--driver", "575.51.03", cwd=REPO_ROOT)
        assert driver.returncode == 0, driver.stdout + driver.stderr
