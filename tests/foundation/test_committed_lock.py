"""The committed pixi.lock and envs/ are exactly what the lock engine gives on the conda-forge subset."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import REPO_ROOT, run_cli
from tests.support.locks import lock_records

SUBSET = REPO_ROOT / "tests" / "data" / "channels" / "conda-forge"


def test_committed_lock_is_reproducible_from_the_subset() -> None:
    result = run_cli(
        "lock",
        "--check",
        "-e",
        "pytorch",
        "-e",
        "tensorflow",
        "--mirror",
        f"conda-forge={SUBSET.as_uri()}",
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_exports_match_the_committed_lock() -> None:
    result = run_cli("export", "--check", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_lock_holds_gpu_builds_from_conda_forge() -> None:
    for flavor, package in (("pytorch", "pytorch"), ("tensorflow", "tensorflow")):
        records = lock_records(REPO_ROOT / "pixi.lock", flavor)
        assert str(records[package].build).startswith("cuda")
        assert str(records["cuda-version"].version).startswith("12.")
        assert all(r.url.startswith("https://conda.anaconda.org/conda-forge/") for r in records.values())
        assert all(r.sha256 is not None for r in records.values())


def test_subset_provenance_is_shipped() -> None:
    assert (SUBSET.parent / "PROVENANCE.md").is_file()
    assert Path(SUBSET / "linux-64" / "repodata.json").is_file()


def test_repository_audit_of_the_flavors_is_clean() -> None:
    """pixi.lock satisfies pixi.toml for both flavors, and envs/ and the generated files match it."""
    result = run_cli("audit", "lock", "-e", "pytorch", "-e", "tensorflow", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for flavor in ("pytorch", "tensorflow"):
        cuda = run_cli("audit", "cuda", flavor, "--driver", "575.51.03", cwd=REPO_ROOT)
        assert cuda.returncode == 0, cuda.stdout + cuda.stderr
