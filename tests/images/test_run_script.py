"""The generated service.cli/run, executed with sh: it exports INPUT_N and execs the runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.images.metadata import load_metadata, parse_metadata
from cli.images.runscript import render_run_script
from tests.images.conftest import REPO
from tests.support.workspace import flavor_metadata

# A stand-in `python` that records how it was called and exits with a known status.
FAKE_PYTHON = """#!/bin/sh
{
  echo "pid=$$"
  echo "args=$*"
  env | grep -E '^(INPUT_[0-9]+|PYTHONPATH|OUTPUT_FOLDER)=' | sort
} > "$RECORD"
exit 7
"""


def run_script(tmp_path: Path, script: str, *args: str, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    service_cli = tmp_path / "service.cli"
    service_cli.mkdir()
    (service_cli / "run").write_text(script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    record = tmp_path / "record.txt"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "INPUT_FOLDER": str(tmp_path / "input"),
        "OUTPUT_FOLDER": str(tmp_path / "output"),
        "RECORD": str(record),
        **(extra_env or {}),
    }
    process = subprocess.Popen(["sh", str(service_cli / "run"), *args], env=env, cwd=tmp_path)
    assert process.wait(timeout=30) == 7, "the runner's exit status must be the script's"
    lines = record.read_text().splitlines()
    recorded = dict(line.split("=", 1) for line in lines)
    recorded["script_pid"] = str(process.pid)
    return recorded


def test_repository_run_script_exports_inputs_and_execs_the_runner(tmp_path: Path) -> None:
    script = (REPO / "flavors" / "pytorch" / "service.cli" / "run").read_text()
    recorded = run_script(tmp_path, script, "--verbose")
    for n in range(1, 6):
        assert recorded[f"INPUT_{n}"] == f"{tmp_path}/input/input_{n}"
    assert "INPUT_6" not in recorded
    assert recorded["args"] == "-m runner --verbose"
    assert recorded["PYTHONPATH"] == "/opt/runner"
    # exec: the runner is the very process that started as the run script, so signals reach it.
    assert recorded["pid"] == recorded["script_pid"]


def test_an_input_variable_the_caller_set_is_kept(tmp_path: Path) -> None:
    script = (REPO / "flavors" / "pytorch" / "service.cli" / "run").read_text()
    recorded = run_script(tmp_path, script, extra_env={"INPUT_2": "/data/elsewhere"})
    assert recorded["INPUT_2"] == "/data/elsewhere"
    assert recorded["INPUT_3"] == f"{tmp_path}/input/input_3"


def test_the_runner_started_by_the_run_script_hands_the_callers_input_to_the_script(tmp_path: Path) -> None:
    """The real runner behind the real run script (runner/README.md: "INPUT_N is the caller's INPUT_N")."""
    inputs, data, outputs = tmp_path / "inputs", tmp_path / "data", tmp_path / "outputs"
    inputs.mkdir()
    data.mkdir()
    (inputs / "main.py").write_text(
        "import os\nprint('INPUT_1', os.environ['INPUT_1'])\nprint('INPUT_2', os.environ['INPUT_2'])\n"
    )
    env = {
        "PATH": os.environ["PATH"],
        "INPUT_FOLDER": str(inputs),
        "OUTPUT_FOLDER": str(outputs),
        "INPUT_2": str(data),
        "RUNNER_HOME": str(REPO),
        "RUNNER_PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["sh", str(REPO / "flavors" / "pytorch" / "service.cli" / "run")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"INPUT_1 {inputs}", f"INPUT_2 {data}"]  # flat layout: INPUT_1 is the folder
    assert "warning" not in done.stderr


def test_inputs_follow_the_metadata(tmp_path: Path) -> None:
    document = flavor_metadata("jax")
    port = {"label": "In", "description": "An input", "type": "data:*/*"}
    document["inputs"] = {"input_3": {**port, "displayOrder": 2}, "input_1": {**port, "displayOrder": 1}}
    script = render_run_script(parse_metadata(document, Path("m.yml")), "flavors/jax/metadata.yml")
    recorded = run_script(tmp_path, script, extra_env={"RUNNER_HOME": "/srv/runner", "PYTHONPATH": "/x"})
    assert {k for k in recorded if k.startswith("INPUT_")} == {"INPUT_1", "INPUT_3"}
    assert recorded["INPUT_3"] == f"{tmp_path}/input/input_3"
    assert recorded["PYTHONPATH"] == "/srv/runner:/x"
    assert script.index("INPUT_1:=") < script.index("INPUT_3:=")


def test_without_input_folder_it_fails_before_the_runner(tmp_path: Path) -> None:
    script = render_run_script(load_metadata(REPO / "flavors" / "tensorflow" / "metadata.yml"), "m.yml")
    (tmp_path / "run").write_text(script)
    done = subprocess.run(["sh", str(tmp_path / "run")], env={"PATH": os.environ["PATH"]}, capture_output=True)
    assert done.returncode != 0
    assert b"INPUT_FOLDER" in done.stderr


@pytest.mark.parametrize("flavor", ["pytorch", "tensorflow"])
def test_repository_run_scripts_are_executable_and_marked_generated(flavor: str) -> None:
    path = REPO / "flavors" / flavor / "service.cli" / "run"
    assert path.stat().st_mode & 0o111
    assert "Generated by `python -m cli generate`" in path.read_text().splitlines()[1]
