"""PyPI dependencies: locked offline against a local wheel index (conda first, then uv), installed,
exported (or refused in one line) and diffed; `lock --check` follows every PyPI change."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.errors import UserError
from cli.lockengine.downloads import PYPI_CHANGED_FIX, PYPI_MISSING_FIX, PYPI_NETWORK_FIX
from cli.lockengine.install import STAGING_INFIX
from cli.lockengine.lockfile import read_lock_data
from cli.lockengine.pypi import install_pypi_packages
from tests.runner.wheels import FakeWheel, build_wheel, write_simple_index
from tests.support.cli import REPO_ROOT, error_line, run_cli
from tests.support.http_channel import refused_url, serve_channel
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
name = "{name}"
channels = ["{channel}"]
platforms = ["linux-64"]

[pypi-options]
index-url = "{index}"

[feature.app.dependencies]
python = "3.12.*"
{conda}
[feature.app.pypi-dependencies]
{pypi}
[environments]
app = ["app"]
"""
APP_PYPI = """\
needsbase = "*"
basepkg = "==1.0"
withextra = { version = "*", extras = ["fast"] }
usesnumpy = "*"
"""


def locked_app_workspace(root: Path, channel: Path, index: str, *, name: str, conda: str, pypi: str) -> Path:
    """A workspace whose one flavor, `app`, has conda and PyPI dependencies, locked with the CLI."""
    (root / "flavors" / "app").mkdir(parents=True)
    manifest = MANIFEST.format(name=name, channel=channel.as_uri(), index=index, conda=conda, pypi=pypi)
    (root / "pixi.toml").write_text(manifest)
    (root / "flavors" / "app" / "metadata.yml").write_text(yaml.safe_dump(flavor_metadata("app"), sort_keys=False))
    (root / "flavors" / "app" / "runtime.yml").write_text(yaml.safe_dump({"resources": {"VRAM": 1}}))
    result = run_cli("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def wheel_index(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("wheels")
    for wheel in WHEELS:
        build_wheel(root / "files", wheel)
    return write_simple_index(root / "files", root / "simple").as_uri()


@pytest.fixture()
def pypi_workspace(tmp_path: Path, gpu_channel: Path, wheel_index: str) -> Path:
    return locked_app_workspace(
        tmp_path / "ws", gpu_channel, wheel_index, name="pypi-runners", conda='numpy = "*"\n', pypi=APP_PYPI
    )


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
    # uv's lock file (a world-writable `.lock` at the root of the prefix it installed into) is not left behind:
    # no package owns it, so `audit prefix` would call it unexpected, and an image would carry it.
    # The PyPI distributions' files are owned through their RECORD: the whole prefix audits clean.
    assert not (prefix / ".lock").exists()
    outcome = run_cli("audit", "prefix", "app", prefix, "--json", cwd=pypi_workspace)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    audited = json.loads(outcome.stdout)
    assert audited["findings"] == []
    assert audited["pypi_packages"] == {"installed": 5, "locked": 5}


# --- audit prefix: locked PyPI packages against the distributions, files against RECORD ----------


def audit_findings(workspace: Path, prefix: Path) -> tuple[int, dict[str, object], set[tuple[str, str]]]:
    outcome = run_cli("audit", "prefix", "app", prefix, "--json", cwd=workspace)
    assert outcome.returncode in (0, 1), outcome.stderr
    report = json.loads(outcome.stdout)
    return outcome.returncode, report, {(f["check"], f["subject"]) for f in report["findings"]}


def site_packages(prefix: Path) -> Path:
    (site,) = prefix.glob("lib/python*/site-packages")
    return site


def test_audit_prefix_reports_missing_extra_and_different_pypi_packages(pypi_workspace: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    assert run_cli("install", "app", "--prefix", prefix, "--quiet", cwd=pypi_workspace).returncode == 0
    site = site_packages(prefix)
    relative_site = site.relative_to(prefix).as_posix()
    shutil.rmtree(site / "fastlib-1.0.dist-info")  # its module stays behind, now owned by nobody
    wheels = tmp_path / "more-wheels"
    stray = build_wheel(wheels, FakeWheel("Stray.Tool", "1.0"))  # installed by hand, as `pip install` in an image
    newer = build_wheel(wheels, FakeWheel("basepkg", "2.0"))
    install_pypi_packages(
        prefix,
        [{"pypi": str(stray), "name": "stray-tool"}, {"pypi": str(newer), "name": "basepkg"}],
        tmp_path,
    )
    code, report, found = audit_findings(pypi_workspace, prefix)
    assert code == 1
    assert found == {
        ("package-missing", "fastlib (pypi)"),
        ("package-extra", "stray-tool (pypi)"),  # PEP 503 name
        ("package-different", "basepkg (pypi)"),
        ("file-unexpected", f"{relative_site}/fastlib/__init__.py"),
    }
    details = {f["subject"]: f["detail"] for f in report["findings"]}  # type: ignore[attr-defined]
    assert details["basepkg (pypi)"] == "version: locked 1.0, installed 2.0"
    assert details["fastlib (pypi)"] == "1.0 is locked, not installed"
    assert [(p["kind"], p["name"]) for p in report["missing_packages"]] == [("pypi", "fastlib")]  # type: ignore[attr-defined]
    assert report["pypi_packages"] == {"installed": 5, "locked": 5}
    text = run_cli("audit", "prefix", "app", prefix, cwd=pypi_workspace)
    assert text.returncode == 1
    assert "package-extra: stray-tool (pypi): 1.0 is installed, not locked" in text.stdout
    assert "5 PyPI packages installed, 5 locked" in text.stdout


def test_audit_prefix_checks_pypi_files_against_their_record(
    own_index_workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    workspace, _wheels = own_index_workspace
    prefix = tmp_path / "env"
    assert run_cli("install", "app", "--prefix", prefix, "--quiet", cwd=workspace).returncode == 0
    code, report, found = audit_findings(workspace, prefix)
    assert (code, found) == (0, set())
    site = site_packages(prefix)
    recorded = [row for record in site.glob("*.dist-info/RECORD") for row in record.read_text().splitlines()]
    hashed = [row for row in recorded if ",sha256=" in row]
    assert len(hashed) == len(recorded) - 2  # every row but the two RECORDs' own
    assert report["stats"]["files_hashed"] >= len(hashed)  # type: ignore[index]
    relative_site = site.relative_to(prefix).as_posix()
    module = site / "clitool" / "__init__.py"
    module.unlink()  # uv links files from its cache: replace, not edit in place
    module.write_text("def main():\n    print('changed')\n")
    (prefix / "bin" / "clitool").unlink()  # RECORD's `../../../bin/clitool`
    code, report, found = audit_findings(workspace, prefix)
    assert code == 1
    assert found == {("file-modified", f"{relative_site}/clitool/__init__.py"), ("file-missing", "bin/clitool")}
    details = {f["subject"]: f["detail"] for f in report["findings"]}  # type: ignore[attr-defined]
    assert "RECORD says" in details[f"{relative_site}/clitool/__init__.py"]
    assert details[f"{relative_site}/clitool/__init__.py"].endswith("(of clitool (pypi))")
    assert details["bin/clitool"].endswith("(of clitool (pypi))")


def test_an_edit_in_one_prefix_never_reaches_the_next_install(
    own_index_workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    """As for the conda packages (issue 13): uv hard-links from its cache by default, and trusts its cache
    entries afterwards, so an edit while debugging in one prefix would ship in every later install."""
    workspace, _wheels = own_index_workspace
    first, second, linked = tmp_path / "first", tmp_path / "second", tmp_path / "linked"
    assert run_cli("install", "app", "--prefix", first, "--quiet", cwd=workspace).returncode == 0
    module = site_packages(first) / "clitool" / "__init__.py"
    assert module.stat().st_nlink == 1  # a copy: no inode shared with uv's cache
    with module.open("a") as handle:  # edited in place, as an editor or `>>` does
        handle.write("print('debugging')\n")
    assert run_cli("install", "app", "--prefix", second, "--quiet", cwd=workspace).returncode == 0
    assert audit_findings(workspace, second)[::2] == (0, set())
    assert "debugging" not in (site_packages(second) / "clitool" / "__init__.py").read_text()
    # `--link hardlink` is the explicit choice of sharing, for the PyPI packages too
    assert run_cli("install", "app", "--prefix", linked, "--link", "hardlink", "--quiet", cwd=workspace).returncode == 0
    assert (site_packages(linked) / "clitool" / "__init__.py").stat().st_nlink > 1


def test_audit_prefix_refuses_record_paths_that_leave_the_prefix(
    own_index_workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    workspace, _wheels = own_index_workspace
    prefix = tmp_path / "env"
    assert run_cli("install", "app", "--prefix", prefix, "--quiet", cwd=workspace).returncode == 0
    site = site_packages(prefix)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not the prefix's\n")
    (site / "escape").symlink_to(outside)
    record = site / "fastlib-1.0.dist-info" / "RECORD"
    depth = "../" * (len(site.relative_to(tmp_path).parts))
    with record.open("a") as handle:
        handle.write(f"{depth}outside/secret,,\nescape/secret,,\n{outside / 'secret'},,\n")
    code, report, found = audit_findings(workspace, prefix)
    assert code == 1
    record_subject = record.relative_to(prefix).as_posix()
    assert found == {("file-outside-prefix", record_subject), ("file-unexpected", f"{site.relative_to(prefix)}/escape")}
    refused = [f["detail"] for f in report["findings"] if f["check"] == "file-outside-prefix"]  # type: ignore[attr-defined]
    assert len(refused) == 3 and all("leaves the prefix" in d and "(of fastlib (pypi))" in d for d in refused)


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


# --- installing: all or nothing, scripts that name the prefix, fetch errors in one line -----------

CLITOOL = FakeWheel(
    "clitool",
    "1.0",
    files={
        "clitool/__init__.py": "def main():\n    print('clitool')\n",
        "clitool-1.0.dist-info/entry_points.txt": "[console_scripts]\nclitool = clitool:main\n",
    },
)


@pytest.fixture()
def own_index_workspace(tmp_path: Path, gpu_channel: Path) -> tuple[Path, Path]:
    """A locked workspace on a wheel index of its own (which the test may damage): (workspace, wheels folder)."""
    wheels = tmp_path / "wheels"
    for wheel in (CLITOOL, FakeWheel("fastlib", "1.0")):
        build_wheel(wheels, wheel)
    index = write_simple_index(wheels, tmp_path / "simple").as_uri()
    pypi = 'clitool = "*"\nfastlib = "*"\n'
    return locked_app_workspace(tmp_path / "ws", gpu_channel, index, name="pypi-install", conda="", pypi=pypi), wheels


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".installing-" in p.name)


def test_a_failed_pypi_install_leaves_no_prefix(own_index_workspace: tuple[Path, Path], tmp_path: Path) -> None:
    workspace, wheels = own_index_workspace
    wheel = wheels / "fastlib-1.0-py3-none-any.whl"
    wheel.unlink()
    prefix = tmp_path / "envs" / "app"
    result = run_cli("install", "app", "--prefix", prefix, "--quiet", cwd=workspace)
    assert result.returncode == 2, result.stderr
    assert not prefix.exists() and not prefix.is_symlink()
    assert leftovers(prefix.parent) == []
    assert result.stderr.splitlines() == [error_line(result)]
    assert error_line(result) == (
        f"error: cannot download fastlib 1.0: {wheel.as_uri()} is not there (no such file) ({PYPI_MISSING_FIX})"
    )


def test_pypi_scripts_name_the_final_prefix(own_index_workspace: tuple[Path, Path], tmp_path: Path) -> None:
    workspace, _wheels = own_index_workspace
    prefix = tmp_path / "envs" / "app"
    prefix.mkdir(parents=True)  # an empty folder is a new prefix too
    result = run_cli("install", "app", "--prefix", prefix, "--quiet", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert not prefix.is_symlink() and leftovers(prefix.parent) == []
    script = prefix / "bin" / "clitool"
    assert script.read_text().splitlines()[0] == f"#!{prefix}/bin/python"
    (record,) = prefix.glob("lib/python*/site-packages/clitool-1.0.dist-info/RECORD")
    rows = {row.split(",")[0]: row.split(",")[1] for row in record.read_text().splitlines()}
    digest = base64.urlsafe_b64encode(hashlib.sha256(script.read_bytes()).digest()).rstrip(b"=").decode()
    assert rows["../../../bin/clitool"] == f"sha256={digest}"  # RECORD states the script as it is


def test_an_interrupted_install_is_cleaned_up_by_the_next(
    own_index_workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    workspace, _wheels = own_index_workspace
    prefix = tmp_path / "envs" / "app"
    staging = prefix.parent / f".app{STAGING_INFIX}killed"
    (staging / "conda-meta").mkdir(parents=True)
    prefix.symlink_to(staging)  # what an install killed while uv ran leaves
    result = run_cli("install", "app", "--prefix", prefix, "--quiet", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "left by an install that was interrupted" in result.stderr
    assert prefix.is_dir() and not prefix.is_symlink() and leftovers(prefix.parent) == []


@pytest.mark.parametrize("fault", ["refused", "404", "other bytes"])
def test_pypi_fetch_errors_name_the_package_the_url_and_the_way_out(tmp_path: Path, fault: str) -> None:
    wheel = build_wheel(tmp_path / "wheels", FakeWheel("fastlib", "1.0"))
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").symlink_to(sys.executable)
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with serve_channel(wheel.parent) as server:
        base = refused_url() if fault == "refused" else server.url
        name = "fastlib-2.0-py3-none-any.whl" if fault == "404" else wheel.name
        url = f"{base}/{name}"
        entry = {
            "pypi": url,
            "name": "fastlib",
            "version": "1.0",
            "sha256": "0" * 64 if fault == "other bytes" else sha256,
        }
        with pytest.raises(UserError) as raised:
            install_pypi_packages(prefix, [entry], tmp_path, retries=0)
    line = raised.value.one_line()
    if fault == "refused":
        assert line.startswith(f"cannot download fastlib 1.0 from {url}: ") and "Connection refused" in line
        assert line.endswith(f"({PYPI_NETWORK_FIX})")
    elif fault == "404":
        assert line == f"cannot download fastlib 1.0: {url} is not there (HTTP 404) ({PYPI_MISSING_FIX})"
    else:
        assert line == (
            f"sha256 mismatch for fastlib 1.0 from {url}: lock says {'0' * 64}, the index sent {sha256} "
            f"({PYPI_CHANGED_FIX})"
        )


def test_requires_dist_keeps_extras_as_written_whatever_the_hash_seed() -> None:
    """pep508_rs writes extras in the order given; packaging keeps them in a set, whose order changes
    with PYTHONHASHSEED, so a relock could reorder `requires_dist` in pixi.lock for nothing."""
    code = "from cli.lockengine.pypi_specs import render_requirement as r; print(r('Cache_Control[zz,Aa,mm]>=1'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for seed in range(8)
    }  # fmt: skip
    assert outputs == {"cache-control[zz,aa,mm]>=1"}
