"""`audit lock`: pixi.lock satisfies pixi.toml, and exports and generated files match it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.audit.conftest import run_audit, run_cli


def checks(stdout: str) -> list[tuple[str, str]]:
    return [(f["check"], f["subject"]) for f in json.loads(stdout)["findings"]]


def details(stdout: str) -> str:
    return "\n".join(f["detail"] for f in json.loads(stdout)["findings"])


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def test_fresh_lock_passes(capsys: pytest.CaptureFixture[str], fresh_workspace: Path) -> None:
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace, "--json")
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    report = json.loads(outcome.stdout)
    assert report["findings"] == []
    assert report["notes"] == []  # every part was checked, generated files included


def test_fresh_lock_passes_in_the_exact_command_form(fresh_workspace: Path) -> None:
    outcome = run_cli("audit", "lock", cwd=fresh_workspace)
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    assert "pixi.lock satisfies pixi.toml" in outcome.stdout


def test_new_dependency_in_pixi_toml_makes_the_lock_stale(
    capsys: pytest.CaptureFixture[str], fresh_workspace: Path
) -> None:
    edit(fresh_workspace / "pixi.toml", 'uv = "*"\n', 'uv = "*"\npytest = ">=8"\n')
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == [
        ("lock-mismatch", "pixi.lock: pytorch [linux-64-cuda-12]"),
        ("lock-mismatch", "pixi.lock: tensorflow [linux-64-cuda-12]"),
    ]
    assert "the requirement 'pytest >=8' could not be satisfied (required by '<environment>')" in details(
        outcome.stdout
    )


def test_tighter_spec_in_pixi_toml_makes_the_lock_stale(
    capsys: pytest.CaptureFixture[str], fresh_workspace: Path
) -> None:
    edit(fresh_workspace / "pixi.toml", 'torchvision = "*"', 'torchvision = ">=0.21"')
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace, "--json")
    assert outcome.code == 1
    assert "the requirement 'torchvision >=0.21' could not be satisfied" in details(outcome.stdout)


def test_removed_dependency_leaves_the_lock_stale(capsys: pytest.CaptureFixture[str], fresh_workspace: Path) -> None:
    edit(fresh_workspace / "pixi.toml", 'torchvision = "*"\n', "")
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == [("lock-mismatch", "pixi.lock: pytorch [linux-64-cuda-12]")]
    assert "more conda packages in the lock file than are used by the environment: torchvision" in details(
        outcome.stdout
    )


def test_new_environment_in_pixi_toml_is_reported(capsys: pytest.CaptureFixture[str], fresh_workspace: Path) -> None:
    edit(fresh_workspace / "pixi.toml", "[environments]\n", '[environments]\ndev = ["runner"]\n')
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace, "--json")
    assert outcome.code == 1
    assert ("lock-mismatch", "pixi.lock: dev") in checks(outcome.stdout)
    assert "environment is missing from pixi.lock" in details(outcome.stdout)


def test_edited_conda_lock_export_is_reported_with_the_package(
    capsys: pytest.CaptureFixture[str], fresh_workspace: Path
) -> None:
    export = fresh_workspace / "envs" / "pytorch" / "conda-lock.yml"
    edit(export, "version: 2.0.0\n", "version: 2.0.1\n")  # numpy's pin
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == [("export-stale", "envs/pytorch/conda-lock.yml")]
    assert "numpy [linux-64]: 2.0.0 py312_h0_0 in pixi.lock, 2.0.1 py312_h0_0 in the export" in details(outcome.stdout)


def test_edited_explicit_export_is_reported(capsys: pytest.CaptureFixture[str], fresh_workspace: Path) -> None:
    export = fresh_workspace / "envs" / "tensorflow" / "linux-64.explicit"
    lines = export.read_text().splitlines(keepends=True)
    export.write_text("".join(line for line in lines if "/uv-0.5.0-" not in line))
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == [("export-stale", "envs/tensorflow/linux-64.explicit")]
    assert "uv [linux-64]: 0.5.0 h0_0 in pixi.lock, absent in the export" in details(outcome.stdout)


def test_missing_and_orphan_exports_are_reported(capsys: pytest.CaptureFixture[str], fresh_workspace: Path) -> None:
    (fresh_workspace / "envs" / "pytorch" / "linux-64.explicit").unlink()
    shutil.copytree(fresh_workspace / "envs" / "pytorch", fresh_workspace / "envs" / "jax")
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == [
        ("export-stale", "envs/pytorch/linux-64.explicit"),
        ("export-orphan", "envs/jax"),
    ]


def test_edited_generated_file_is_reported(capsys: pytest.CaptureFixture[str], fresh_workspace: Path) -> None:
    run_script = fresh_workspace / "flavors" / "pytorch" / "service.cli" / "run"
    with run_script.open("a") as handle:
        handle.write("echo patched by hand\n")
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace, "--json")
    assert outcome.code == 1
    assert checks(outcome.stdout) == [("generated-stale", "flavors/pytorch/service.cli/run")]


def test_edited_compose_file_is_reported_in_the_table(
    capsys: pytest.CaptureFixture[str], fresh_workspace: Path
) -> None:
    compose = fresh_workspace / "docker-compose.yml"
    compose.write_text(compose.read_text() + "# local tweak\n")
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace)
    assert outcome.code == 1
    assert "docker-compose.yml" in outcome.stdout
    assert "1 finding" in outcome.stdout


def test_missing_lock_is_an_input_error(capsys: pytest.CaptureFixture[str], fresh_workspace: Path) -> None:
    (fresh_workspace / "pixi.lock").unlink()
    outcome = run_audit(capsys, "lock", "--manifest-path", fresh_workspace)
    assert outcome.code == 2
    assert "pixi.lock: no lock file" in outcome.stderr
