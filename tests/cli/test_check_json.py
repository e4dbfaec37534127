"""`lock --check`, `export --check` and `generate --check` speak one JSON shape (cli/check_report.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.support.cli import REPO_ROOT, run_cli

COMMANDS = ("lock", "export", "generate")
KEYS = ["command", "problems", "reason", "verdict"]


def check(command: str, workspace: Path) -> tuple[int, dict[str, Any]]:
    result = run_cli(command, "--check", "--json", cwd=workspace)
    report = json.loads(result.stdout)
    assert sorted(report) == KEYS, result.stdout
    assert report["command"] == command and all(isinstance(p, str) for p in report["problems"])
    return result.returncode, report


def test_fresh_and_stale_read_the_same_for_every_check(locked_workspace: Path) -> None:
    assert run_cli("generate", cwd=locked_workspace).returncode == 0
    for command in COMMANDS:
        assert check(command, locked_workspace) == (
            0,
            {"command": command, "verdict": "fresh", "problems": [], "reason": None},
        )

    export = next((locked_workspace / "envs").glob("*/conda-lock.yml"))
    export.unlink()
    compose = locked_workspace / "docker-compose.yml"
    compose.unlink()
    manifest = locked_workspace / "pixi.toml"
    manifest.write_text(manifest.read_text().replace('uv = "*"', 'uv = "*"\npytest = "*"'))
    stale = {command: check(command, locked_workspace) for command in COMMANDS}
    assert {command: (code, report["verdict"], report["reason"]) for command, (code, report) in stale.items()} == {
        command: (1, "stale", None) for command in COMMANDS
    }
    assert any("pytest" in problem for problem in stale["lock"][1]["problems"])
    assert stale["export"][1]["problems"] == [f"{export}: missing (run `python -m cli export`)"]
    assert any(problem.startswith(f"{compose}: missing") for problem in stale["generate"][1]["problems"])


def test_cannot_check_has_the_same_shape(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    shutil.copytree(REPO_ROOT / "tests" / "data" / "pixi-fixtures" / "satisfiability" / "old_lock_file", workspace)
    code, report = check("lock", workspace)
    assert code == 2 and report["verdict"] == "cannot check" and report["problems"] == []
    assert "pyproject.toml" in report["reason"]
