"""PyPI dependencies: locked offline against a local wheel index (conda first, then uv), installed,
exported (or refused in one line) and diffed; `lock --check` follows every PyPI change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cli.lockengine.lockfile import read_lock_data
from tests.runner.wheels import FakeWheel, build_wheel, write_simple_index
from tests.support.cli import error_line, run_cli
from tests.support.workspace import flavor_metadata

WHEELS = (
    FakeWheel("basepkg", "1.0"),
    FakeWheel("basepkg", "2.0"),
    FakeWheel("needsbase", "1.0", requires=("basepkg>=1",)),
    FakeWheel("fastlib", "1.0"),
    FakeWheel("withextra", "1.0", requires=('fastlib>=1 ; extra == "fast"',), extras=("fast",)),
    FakeWheel("usesnumpy", "1.0", requires=("numpy>=1.20",)),
    FakeWheel("numpy", "9.9"),  # never taken: conda's numpy is held fixed
)

MANIFEST = """\
[workspace]
name = "pypi-runners"
channels = ["{channel}"]
platforms = ["linux-64"]

[pypi-options]
index-url = "{index}"

[feature.app.dependencies]
python = "3.12.*"
numpy = "*"

[feature.app.pypi-dependencies]
needsbase = "*"
basepkg = "==1.0"
withextra = {{ version = "*", extras = ["fast"] }}
usesnumpy = "*"

[environments]
app = ["app"]
"""


@pytest.fixture(scope="module")
def wheel_index(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("wheels")
    for wheel in WHEELS:
        build_wheel(root / "files", wheel)
    return write_simple_index(root / "files", root / "simple").as_uri()


@pytest.fixture()
def pypi_workspace(tmp_path: Path, gpu_channel: Path, wheel_index: str) -> Path:
    root = tmp_path / "ws"
    (root / "flavors" / "app").mkdir(parents=True)
    (root / "pixi.toml").write_text(MANIFEST.format(channel=gpu_channel.as_uri(), index=wheel_index))
    (root / "flavors" / "app" / "metadata.yml").write_text(yaml.safe_dump(flavor_metadata("app"), sort_keys=False))
    (root / "flavors" / "app" / "runtime.yml").write_text(yaml.safe_dump({"resources": {"VRAM": 1}}))
    result = run_cli("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def pypi_entries(root: Path) -> dict[str, dict[str, object]]:
    data = read_lock_data(root / "pixi.lock")
    (platform,) = data.environments["app"].packages
    return {str(e["name"]): e for e in data.environment_packages("app", platform) or [] if "pypi" in e}


def test_pypi_packages_are_locked_after_conda_with_hashes(pypi_workspace: Path, wheel_index: str) -> None:
    entries = pypi_entries(pypi_workspace)
    assert sorted(entries) == ["basepkg", "fastlib", "needsbase", "usesnumpy", "withextra"]
    assert entries["basepkg"]["version"] == "1.0"
    assert all(str(e["pypi"]).endswith(".whl") and len(str(e["sha256"])) == 64 for e in entries.values())
    assert entries["needsbase"]["requires_dist"] == ["basepkg>=1"]
    assert entries["withextra"]["requires_dist"] == ["fastlib>=1 ; extra == 'fast'"]
    assert all(e["index"] == wheel_index for e in entries.values())  # not PyPI: recorded, as pixi does
    text = (pypi_workspace / "pixi.lock").read_text()
    assert "numpy-9.9" not in text  # conda's numpy answered usesnumpy's requirement
    assert "- pkg:pypi/numpy" in text  # pixi records which conda packages are PyPI packages
    assert f"indexes:\n    - {wheel_index}" in text


def test_relock_is_byte_identical_and_check_follows_pypi_changes(pypi_workspace: Path) -> None:
    lock = pypi_workspace / "pixi.lock"
    first = lock.read_bytes()
    assert run_cli("lock", cwd=pypi_workspace).returncode == 0
    assert lock.read_bytes() == first
    assert run_cli("lock", "--check", cwd=pypi_workspace).returncode == 0
    manifest = pypi_workspace / "pixi.toml"
    original = manifest.read_text()
    for edited in (
        original.replace('basepkg = "==1.0"', 'basepkg = "==2.0"'),  # a version
        original.replace('extras = ["fast"]', "extras = []"),  # an extra: fastlib left over
        original.replace('usesnumpy = "*"', 'usesnumpy = { version = "*", env-markers = "sys_platform == \'win32\'" }'),
        original.replace('needsbase = "*"\n', ""),  # a removed dependency
        original.replace("[pypi-options]\n", '[pypi-options]\nprerelease-mode = "allow"\n'),  # pre-release mode
        original.replace('index-url = "', 'extra-index-urls = ["https://example.org/simple"]\nindex-url = "'),  # index
    ):
        manifest.write_text(edited)
        check = run_cli("lock", "--check", cwd=pypi_workspace)
        assert check.returncode == 1, edited
    manifest.write_text(original)
    assert run_cli("lock", "--check", cwd=pypi_workspace).returncode == 0
    assert lock.read_bytes() == first  # --check writes nothing


def test_install_puts_the_pypi_packages_into_the_prefix(pypi_workspace: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    result = run_cli("install", "app", "--prefix", prefix, "--quiet", cwd=pypi_workspace)
    assert result.returncode == 0, result.stderr
    site = sorted(prefix.glob("lib/python*/site-packages"))
    installed = {p.name.split("-")[0] for s in site for p in s.glob("*.dist-info")}
    assert {"basepkg", "needsbase", "withextra", "fastlib", "usesnumpy"} <= installed
    assert (prefix / "conda-meta").is_dir()  # the conda packages came first


def test_export_carries_pypi_in_conda_lock_and_refuses_explicit(pypi_workspace: Path) -> None:
    refused = run_cli("export", cwd=pypi_workspace)
    assert refused.returncode == 2
    line = error_line(refused)
    assert "PyPI packages" in line and "--ignore-pypi-errors" in line
    assert "Traceback" not in refused.stderr
    assert not (pypi_workspace / "envs").exists()  # nothing half-written
    result = run_cli("export", "--ignore-pypi-errors", cwd=pypi_workspace)
    assert result.returncode == 0, result.stderr
    conda_lock = yaml.safe_load((pypi_workspace / "envs" / "app" / "conda-lock.yml").read_text())
    pip = {p["name"]: p for p in conda_lock["package"] if p["manager"] == "pip"}
    assert sorted(pip) == ["basepkg", "fastlib", "needsbase", "usesnumpy", "withextra"]
    assert all(p["hash"]["sha256"] and p["platform"] == "linux-64" for p in pip.values())
    explicit = (pypi_workspace / "envs" / "app" / "linux-64.explicit").read_text()
    assert "# PyPI packages left out: basepkg, fastlib, needsbase, usesnumpy, withextra" in explicit


def test_audit_diff_reports_pypi_changes(pypi_workspace: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.lock"
    shutil.copy(pypi_workspace / "pixi.lock", old)
    manifest = pypi_workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('basepkg = "==1.0"', 'basepkg = ">=2"'))
    assert run_cli("lock", cwd=pypi_workspace).returncode == 0
    result = run_cli("audit", "diff", old, pypi_workspace / "pixi.lock", "--json", cwd=pypi_workspace)
    assert result.returncode == 1
    (section,) = json.loads(result.stdout)["environments"]
    assert [(c["name"], c["kind"], c["old"]["version"], c["new"]["version"]) for c in section["upgraded"]] == [
        ("basepkg", "pypi", "1.0", "2.0")
    ]
