"""The lock reader on real public lock files (pixi.lock v4 to v7, conda-lock.yml) and on the exports."""

from __future__ import annotations

from pathlib import Path

import pytest
from rattler import LockFile

from cli.audit.readers import (
    CONDA,
    PYPI,
    LockedPackage,
    from_record,
    read_snapshot,
    split_archive_name,
    subdir_of_url,
)
from cli.errors import UserError
from tests.audit.conftest import LOCKS

V4 = LOCKS / "rattler-python.v4.excerpt.pixi.lock"
V5 = LOCKS / "intminsu-pixi-sample.v5.pixi.lock"
V6 = LOCKS / "pytorch-gpu-pixi-example.v6.pixi.lock"
V7 = LOCKS / "pixi-multi-machine.v7.pixi.lock"
CONDA_LOCK = LOCKS / "pangeo-pytorch-notebook.conda-lock.yml"


def counts(path: Path) -> dict[str, dict[str, int]]:
    snapshot = read_snapshot(path)
    return {env: {p: len(pkgs) for p, pkgs in platforms.items()} for env, platforms in snapshot.packages.items()}


@pytest.mark.parametrize(
    ("path", "format_", "expected"),
    [
        (V4, "pixi.lock v4", {"default": {"linux-64": 4}}),
        (V6, "pixi.lock v6", {"default": {"linux-64": 100, "osx-arm64": 60, "win-64": 71}}),
        # pixi names rich platforms p1, p2, …: a platform shows as its subdir where that is unique
        (V7, "pixi.lock v7", {"default": {"linux-64": 133, "p1": 125, "p2": 133, "osx-arm64": 125, "win-64": 125}}),
        (CONDA_LOCK, "conda-lock.yml v1", {"default": {"linux-64": 885}}),
    ],
)
def test_real_locks_are_read_per_environment_and_platform(
    path: Path, format_: str, expected: dict[str, dict[str, int]]
) -> None:
    assert read_snapshot(path).format == format_
    assert counts(path) == expected


def test_real_v5_lock_with_thirteen_environments() -> None:
    found = counts(V5)
    assert len(found) == 13
    assert found["default"] == {"linux-64": 152}
    assert found["py310cu121"] == {"linux-64": 298}


@pytest.mark.parametrize("path", [V4, V5, V6, V7], ids=["v4", "v5", "v6", "v7"])
def test_reader_agrees_with_py_rattler_on_every_conda_record(path: Path) -> None:
    """py-rattler is the reference parser: same name, version, build, URL and hashes for every package."""
    snapshot = read_snapshot(path)
    lock = LockFile.from_path(path)
    compared = 0
    for name, environment in lock.environments():
        for platform in environment.platforms():
            theirs = {
                r.name.normalized: from_record(r)
                for r in environment.conda_repodata_records_for_platform(platform) or []
            }
            shown = platform.name if platform.name in snapshot.packages[name] else str(platform.subdir)
            mine = {key[1]: p for key, p in snapshot.packages[name][shown].items() if key[0] == CONDA}
            assert set(mine) == set(theirs)
            for package_name, package in mine.items():
                other = theirs[package_name]
                assert (package.version, package.build, package.url, package.sha256, package.md5) == (
                    other.version,
                    other.build,
                    other.url,
                    other.sha256,
                    other.md5,
                )
                compared += 1
    assert compared > 0


def test_v4_builds_come_from_the_archive_name() -> None:
    """v4 records leave out the build string; the file name carries it."""
    packages = read_snapshot(V4).packages["default"]["linux-64"]
    assert packages[(CONDA, "_libgcc_mutex")].build == "conda_forge"
    assert packages[(CONDA, "bzip2")].build == "h7f98852_4"
    assert packages[(CONDA, "_openmp_mutex")].depends == ("_libgcc_mutex ==0.1 conda_forge", "libgomp >=7.5.0")


def test_v7_named_platforms_resolve_to_their_subdir_records() -> None:
    """In v7, platform `p2` is linux-64 with CUDA and `p1` is win-64: each gets its own subdir's builds."""
    packages = read_snapshot(V7).packages["default"]
    assert packages["p2"][(CONDA, "bzip2")].subdir == "linux-64"
    assert packages["p1"][(CONDA, "bzip2")].subdir == "win-64"
    assert packages["p2"][(CONDA, "bzip2")].url == packages["linux-64"][(CONDA, "bzip2")].url


def test_v5_records_carry_licences_and_channels() -> None:
    snapshot = read_snapshot(V5)
    assert snapshot.channels["default"][0] == "https://conda.anaconda.org/pytorch/"
    pytorch = snapshot.packages["py310cu121"]["linux-64"][(CONDA, "pytorch")]
    assert (pytorch.version, pytorch.build) == ("2.3.0", "py3.10_cuda12.1_cudnn8.9.2_0")


def test_pypi_packages_of_v5_and_v6_locks(tmp_path: Path) -> None:
    """pixi.lock records PyPI packages by URL with name and version (`kind: pypi` before v6, `pypi:` after)."""
    wheel = "https://files.pythonhosted.org/packages/requests-2.32.3-py3-none-any.whl"
    v5 = tmp_path / "v5.lock"
    v5.write_text(
        "version: 5\nenvironments:\n  default:\n    channels: []\n    packages:\n      linux-64:\n"
        f"      - pypi: {wheel}\npackages:\n- kind: pypi\n  name: requests\n  version: 2.32.3\n"
        f"  url: {wheel}\n  sha256: {'a' * 64}\n"
    )
    v6 = tmp_path / "v6.lock"
    v6.write_text(
        "version: 6\nenvironments:\n  default:\n    channels: []\n    packages:\n      linux-64:\n"
        f"      - pypi: {wheel}\npackages:\n- pypi: {wheel}\n  name: requests\n  version: 2.32.3\n"
        f"  sha256: {'a' * 64}\n"
    )
    for path in (v5, v6):
        package = read_snapshot(path).packages["default"]["linux-64"][(PYPI, "requests")]
        assert package == LockedPackage(PYPI, "requests", "2.32.3", url=wheel, sha256="a" * 64)
        assert package.label == "requests (pypi)"


def test_exports_are_read_back_with_their_environment(locked_workspace: Path) -> None:
    conda_lock = read_snapshot(locked_workspace / "envs" / "pytorch" / "conda-lock.yml")
    explicit = read_snapshot(locked_workspace / "envs" / "pytorch" / "linux-64.explicit")
    lock = read_snapshot(locked_workspace / "pixi.lock")
    assert conda_lock.format == "conda-lock.yml v1"
    assert explicit.format == "@EXPLICIT"
    locked = lock.packages["pytorch"]["linux-64"]
    assert set(conda_lock.packages["pytorch"]["linux-64"]) == set(locked)
    assert set(explicit.packages["pytorch"]["linux-64"]) == set(locked)
    pytorch = explicit.packages["pytorch"]["linux-64"][(CONDA, "pytorch")]
    assert pytorch.md5 == locked[(CONDA, "pytorch")].md5
    assert pytorch.build == "cuda124_py312_h2_300"


def test_plain_explicit_file_takes_its_platform_from_the_urls(tmp_path: Path) -> None:
    explicit = tmp_path / "env.txt"
    explicit.write_text(
        "@EXPLICIT\n"
        "https://conda.anaconda.org/conda-forge/linux-64/bzip2-1.0.8-h4bc722e_7.conda#62ee74e96c5ebb0af99386de58cf9553\n"
        "https://conda.anaconda.org/conda-forge/noarch/tzdata-2024b-hc8b5060_0.conda"
        f"#sha256:{'b' * 64}\n"
    )
    snapshot = read_snapshot(explicit)
    packages = snapshot.packages["default"]["linux-64"]
    assert packages[(CONDA, "bzip2")].md5 == "62ee74e96c5ebb0af99386de58cf9553"
    assert packages[(CONDA, "tzdata")].sha256 == "b" * 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 3\nenvironments: {}\n", "cannot read lock file: missing field `metadata`"),
        ("version: 8\nenvironments: {}\n", "format version 8 is newer than this CLI reads"),
        ("just: [a, mapping]\n", "not a lock file"),
        ("version: 6\nenvironments: {a: [\n", "not valid YAML"),
        (
            "version: 7\nplatforms: [{name: linux-64}]\nenvironments:\n  default:\n    channels: []\n    packages:\n"
            "      linux-64:\n      - conda: https://x/linux-64/a-1-h_0.conda\npackages: []\n",
            "which is not in packages",
        ),
    ],
)
def test_unreadable_locks_are_input_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pixi.lock"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as raised:
        read_snapshot(path)
    assert raised.value.path == path


def test_archive_names() -> None:
    assert split_archive_name("python-3.12.0-h0_0_cpython.conda") == ("python", "3.12.0", "h0_0_cpython")
    assert split_archive_name("ld_impl_linux-64-2.45-h1aa0949_0.tar.bz2") == ("ld_impl_linux-64", "2.45", "h1aa0949_0")
    assert split_archive_name("README.md") is None
    assert subdir_of_url("https://conda.anaconda.org/conda-forge/noarch/pip-25.3-pyh_0.conda") == "noarch"
    assert subdir_of_url("file:///srv/channel/linux-64/x-1-h_0.conda") == "linux-64"
