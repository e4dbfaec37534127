"""The shipped example jobs run offline, and overlays follow the code, not the folder it was unpacked in."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.runner.conftest import REPO, BaseEnv, Job, RunJob, UvRecorder, runner_command

EXAMPLES = REPO / "runner" / "examples"


def run_example(name: str, output: Path, env: dict[str, str], python: Path) -> subprocess.CompletedProcess[str]:
    full = {**env, "INPUT_FOLDER": str(EXAMPLES / name), "OUTPUT_FOLDER": str(output)}
    return subprocess.run(runner_command(python), cwd=REPO, env=full, capture_output=True, text=True, timeout=120)


def test_hello_example(tmp_path: Path, runner_env: dict[str, str], base_env: BaseEnv, uv_recorder: UvRecorder) -> None:
    result = run_example("hello", tmp_path / "out", runner_env, base_env.python)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "output_1" / "summary.json").read_text())
    assert summary["count"] == 11 and summary["mean"] == 4.0
    with zipfile.ZipFile(tmp_path / "out" / "output_1.zip") as bundle:
        assert bundle.namelist() == ["summary.json"]
    assert uv_recorder.calls() == []


def test_hello_example_staged_flat_as_osparc_stages_it(
    tmp_path: Path, runner_env: dict[str, str], base_env: BaseEnv
) -> None:
    """The repository's own pytorch flavor and its metadata: per-port files in one flat input folder."""
    ports = ["--port", f"input_1={EXAMPLES / 'hello' / 'input_1' / 'main.py'}"]
    ports += ["--port", f"input_2={EXAMPLES / 'hello' / 'input_2' / 'numbers.txt'}"]
    staged, output = tmp_path / "staged", tmp_path / "out"
    command = [sys.executable, "-m", "cli", "run", "pytorch", *ports, "--staging", str(staged), "-o", str(output)]
    result = subprocess.run(
        [*command, "--python", str(base_env.python)], cwd=REPO, env=runner_env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in staged.iterdir()) == ["inputs.json", "main.py", "numbers.txt"]
    assert json.loads((staged / "inputs.json").read_text()) == {f"input_{n}": None for n in range(3, 6)}
    summary = json.loads((output / "output_1" / "summary.json").read_text())
    assert summary["count"] == 11 and summary["mean"] == 4.0
    assert json.loads((output / "logs" / "run.json").read_text())["folders"]["layout"] == "flat"
    for n in range(1, 5):
        assert f"output output_{n}: output_{n}.zip" in result.stderr


def test_local_package_example_builds_offline_then_reuses(
    tmp_path: Path, runner_env: dict[str, str], base_env: BaseEnv, uv_recorder: UvRecorder
) -> None:
    env = {**runner_env, "UV_FIND_LINKS": ""}  # nothing but the package shipped with the code
    first = run_example("local_package", tmp_path / "first", env, base_env.python)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "first" / "output_1" / "greeting.txt").read_text() == "hello, oSPARC, from an overlay package\n"
    [package] = json.loads((tmp_path / "first" / "logs" / "run.json").read_text())["overlay"]["packages"]
    assert package["name"] == "greeting" and package["version"] == "1.0.0"
    assert package["url"].endswith("local_package/input_1/greeting")
    calls = len(uv_recorder.calls())
    second = run_example("local_package", tmp_path / "second", env, base_env.python)
    assert second.returncode == 0 and "reused" in second.stderr
    assert len(uv_recorder.calls()) == calls
    assert not [p for p in EXAMPLES.rglob("*") if p.name in ("build", "dist") or p.suffix == ".egg-info"]


def test_a_zipped_job_keeps_its_overlay_and_a_changed_package_gets_a_new_one(
    job: Job, run_job: RunJob, uv_recorder: UvRecorder, runner_env: dict[str, str]
) -> None:
    source = EXAMPLES / "local_package" / "input_1"
    staging = job.root / "staging"
    shutil.copytree(source, staging)

    def pack() -> None:
        with zipfile.ZipFile(job.code / "code.zip", "w") as bundle:
            for path in sorted(staging.rglob("*")):
                if path.is_file():
                    bundle.write(path, path.relative_to(staging).as_posix())

    pack()
    env = {"UV_FIND_LINKS": ""}
    assert run_job(env=env).returncode == 0
    assert uv_recorder.count("venv") == 1
    second = run_job(env=env)  # unpacked into another temporary folder: same overlay
    assert second.returncode == 0 and "reused" in second.stderr
    assert uv_recorder.count("venv") == 1
    init = staging / "greeting" / "src" / "greeting" / "__init__.py"
    init.write_text(init.read_text().replace("from an overlay package", "changed"))
    pack()
    third = run_job(env=env)
    assert third.returncode == 0, third.stderr
    assert uv_recorder.count("venv") == 2
    assert (job.output_folder / "output_1" / "greeting.txt").read_text() == "hello, oSPARC, changed\n"
