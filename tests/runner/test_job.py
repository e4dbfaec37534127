"""End to end without requirements: the contract, outputs, exit codes, streaming, signals, timeouts, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests.runner.conftest import REPO, BaseEnv, Job, RunJob, error_line, runner_command

CONTRACT_SCRIPT = """\
import json, os, sys
from pathlib import Path

folder_in, folder_out = Path(os.environ["INPUT_FOLDER"]), Path(os.environ["OUTPUT_FOLDER"])
for n in range(1, 6):
    assert os.environ[f"INPUT_{n}"] == str(folder_in / f"input_{n}"), n
for n in range(1, 5):
    out = Path(os.environ[f"OUTPUT_{n}"])
    assert out == folder_out / f"output_{n}" and out.is_dir(), n
    (out / f"result_{n}.txt").write_text(f"result {n}\\n")
(Path(os.environ["OUTPUT_1"]) / "nested" / "deeper").mkdir(parents=True)
(Path(os.environ["OUTPUT_1"]) / "nested" / "deeper" / "data.bin").write_bytes(bytes(range(256)))
assert Path.cwd() == Path(__file__).parent, Path.cwd()
assert "PYTHONPATH" not in os.environ or "{repo}" not in os.environ["PYTHONPATH"]
data = (Path(os.environ["INPUT_2"]) / "numbers.txt").read_text().split()
print("sum", sum(map(int, data)))
print("to stderr", file=sys.stderr)
"""


def test_contract_variables_outputs_and_zips(job: Job, run_job: RunJob) -> None:
    job.write("main.py", CONTRACT_SCRIPT.replace("{repo}", str(REPO)))
    (job.input_folder / "input_2" / "numbers.txt").write_text("1 2 3 4\n")
    result = run_job()
    assert result.returncode == 0, result.stderr
    assert "sum 10" in result.stdout
    assert "to stderr" in result.stderr
    for n in range(1, 5):
        archive = job.output_folder / f"output_{n}.zip"
        with zipfile.ZipFile(archive) as bundle:
            assert bundle.read(f"result_{n}.txt") == f"result {n}\n".encode()
    with zipfile.ZipFile(job.output_folder / "output_1.zip") as bundle:
        names = bundle.namelist()
        assert names == sorted(names)
        assert "nested/deeper/data.bin" in names
        assert {info.date_time for info in bundle.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    log = job.log_text()
    assert "sum 10" in log and "to stderr" in log
    summary = job.summary()
    assert summary["status"] == "succeeded" and summary["exit_code"] == 0
    assert summary["script"] == "main.py"
    assert "overlay" not in summary and summary["requirements"] is None
    assert set(summary["durations"]) >= {"setup", "script", "outputs", "total"}
    assert [o["files"] for o in summary["outputs"]] == [2, 1, 1, 1]


def test_output_zips_are_deterministic(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "import os; open(os.path.join(os.environ['OUTPUT_1'], 'a.txt'), 'w').write('same')\n")
    assert run_job().returncode == 0
    first = (job.output_folder / "output_1.zip").read_bytes()
    time.sleep(1.1)  # a different wall-clock second must not change the bytes
    assert run_job().returncode == 0
    assert (job.output_folder / "output_1.zip").read_bytes() == first


@pytest.mark.parametrize("code", [0, 1, 7])
def test_exit_status_is_the_scripts(job: Job, run_job: RunJob, code: int) -> None:
    job.write(
        "main.py", f"import os, sys\nopen(os.path.join(os.environ['OUTPUT_1'], 'partial.txt'), 'w')\nsys.exit({code})\n"
    )
    result = run_job()
    assert result.returncode == code
    summary = job.summary()
    assert summary["exit_code"] == code
    assert summary["status"] == ("succeeded" if code == 0 else "failed")
    with zipfile.ZipFile(job.output_folder / "output_1.zip") as bundle:
        assert bundle.namelist() == ["partial.txt"]  # outputs are kept even when the script fails


def test_an_uncaught_exception_is_a_failure(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "raise RuntimeError('boom')\n")
    result = run_job()
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr
    log = job.log_text().splitlines()
    assert log[0].startswith("runner: osparc runner ") and "inputs: folders layout" in log[0]
    assert log[1] == "runner: running main.py (only .py file) with the base environment"
    assert log[2] == "Traceback (most recent call last):"
    assert "RuntimeError: boom" in log[-3]
    assert log[-2].startswith("runner: outputs: output_1.zip (empty)")
    assert log[-1].startswith("error: runner: main.py exited with status 1 after ")
    assert log[-1].endswith(" s (its output above says why)")
    assert result.stderr.splitlines()[-1] == log[-1]


def _start(job: Job, env: dict[str, str], python: Path, **kwargs: object) -> subprocess.Popen[str]:
    """Start the runner; a watchdog kills it after 60 s so a broken stream cannot hang the suite."""
    full = {**env, "INPUT_FOLDER": str(job.input_folder), "OUTPUT_FOLDER": str(job.output_folder)}
    process = subprocess.Popen(
        runner_command(python),
        cwd=REPO,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.daemon = True
    watchdog.start()
    return process


def test_stdout_streams_live(job: Job, runner_env: dict[str, str], base_env: BaseEnv, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job.write(
        "main.py",
        f"""\
        import os, time
        print("first line", flush=True)
        deadline = time.time() + 30
        while not os.path.exists({str(go)!r}) and time.time() < deadline:
            time.sleep(0.05)
        print("second line")
        """,
    )
    process = _start(job, runner_env, base_env.python)
    assert process.stdout is not None
    started = time.monotonic()
    assert process.stdout.readline() == "first line\n"  # arrives while the script is still waiting
    assert process.poll() is None
    go.touch()
    rest, _ = process.communicate(timeout=60)
    assert rest == "second line\n" and process.returncode == 0
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(("number", "expected"), [(signal.SIGTERM, 42), (signal.SIGINT, 43)])
def test_signals_reach_the_script(
    job: Job, runner_env: dict[str, str], base_env: BaseEnv, number: signal.Signals, expected: int
) -> None:
    job.write(
        "main.py",
        f"""\
        import os, signal, sys, time
        def stop(n, frame):
            open(os.path.join(os.environ["OUTPUT_1"], "stopped.txt"), "w").write(signal.Signals(n).name)
            sys.exit({expected})
        signal.signal(signal.{number.name}, stop)
        print("ready", flush=True)
        time.sleep(60)
        """,
    )
    process = _start(job, runner_env, base_env.python)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    process.send_signal(number)
    process.communicate(timeout=30)
    assert process.returncode == expected
    with zipfile.ZipFile(job.output_folder / "output_1.zip") as bundle:
        assert bundle.read("stopped.txt") == number.name.encode()
    assert job.summary()["signals"] == [number.name]


def test_a_script_killed_by_a_signal_exits_128_plus_n(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert run_job().returncode == 128 + signal.SIGKILL


def test_timeout_stops_the_script(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "import time\nprint('start', flush=True)\ntime.sleep(60)\n")
    started = time.monotonic()
    result = run_job(env={"RUNNER_TIMEOUT": "1", "RUNNER_KILL_GRACE": "2"})
    assert result.returncode == 124
    assert time.monotonic() - started < 20
    assert "RUNNER_TIMEOUT" in result.stderr
    assert job.summary()["status"] == "timed-out"


def test_script_args_and_explicit_entrypoint(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "raise SystemExit('main.py must not run')\n")
    job.write("tools/other.py", "import sys\nprint('args', sys.argv[1:])\n")
    result = run_job("--entrypoint", "tools/other.py", "--", "a", "b c")
    assert result.returncode == 0, result.stderr
    assert "args ['a', 'b c']" in result.stdout
    result = run_job(env={"RUNNER_ENTRYPOINT": "tools/other.py"})
    assert result.returncode == 0 and "args []" in result.stdout


def test_main_py_wins_among_several_scripts(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "import helper\nprint(helper.VALUE)\n")
    job.write("helper.py", "VALUE = 'from helper'\n")
    result = run_job()
    assert result.returncode == 0 and "from helper" in result.stdout


def test_a_zip_of_code_is_unpacked_first(job: Job, run_job: RunJob) -> None:
    archive = job.code / "code.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr(
            "project/main.py", "import os, helper\nprint('zip ok', helper.X, os.path.exists('project/data.txt'))\n"
        )
        bundle.writestr("project/helper.py", "X = 5\n")
        bundle.writestr("project/data.txt", "data\n")
    result = run_job()
    assert result.returncode == 0, result.stderr
    assert "zip ok 5 True" in result.stdout
    assert not list(job.code.glob("project"))  # the input folder itself is left untouched


def test_a_plain_job_folder_works_without_input_1(tmp_path: Path, run_job: RunJob, job: Job) -> None:
    for child in job.input_folder.iterdir():
        child.rmdir()
    (job.input_folder / "script.py").write_text("print('plain folder')\n")
    result = run_job()
    assert result.returncode == 0 and "plain folder" in result.stdout


def test_the_script_does_not_see_the_runner(job: Job, runner_env: dict[str, str], base_env: BaseEnv) -> None:
    """Started with PYTHONPATH=<repo root> (as `cli run` does), the user's code still cannot import the runner."""
    job.write(
        "main.py",
        "import importlib.util, os\nprint('runner visible:', importlib.util.find_spec('runner') is not None)\n",
    )
    env = {
        **runner_env,
        "PYTHONPATH": str(REPO),
        "INPUT_FOLDER": str(job.input_folder),
        "OUTPUT_FOLDER": str(job.output_folder),
    }
    result = subprocess.run(
        runner_command(base_env.python), cwd=job.root, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "runner visible: False" in result.stdout


# --- bad input: one clear line, non-zero exit, the script never starts -----------------------------------------


def test_no_script(job: Job, run_job: RunJob) -> None:
    (job.code / "notes.txt").write_text("no code here\n")
    result = run_job()
    assert result.returncode == 2
    assert "no Python script" in error_line(result)
    assert job.summary()["status"] == "setup-failed"
    assert (job.output_folder / "output_1.zip").exists()


def test_several_candidates_are_listed(job: Job, run_job: RunJob) -> None:
    job.write("train.py", "")
    job.write("evaluate.py", "")
    result = run_job()
    line = error_line(result)
    assert result.returncode == 2
    assert "2 Python files and no main.py" in line and "evaluate.py, train.py" in line and "RUNNER_ENTRYPOINT" in line


def test_several_main_py_are_listed(job: Job, run_job: RunJob) -> None:
    job.write("a/main.py", "")
    job.write("b/main.py", "")
    result = run_job()
    assert result.returncode == 2
    assert "2 main.py files" in error_line(result) and "a/main.py, b/main.py" in error_line(result)


def test_a_missing_entrypoint_lists_the_candidates(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "")
    result = run_job("--entrypoint", "nope.py")
    assert result.returncode == 2
    assert "entry point nope.py not found" in error_line(result) and "main.py" in error_line(result)


def test_two_requirements_files(job: Job, run_job: RunJob, uv_recorder: object) -> None:
    job.write("main.py", "raise SystemExit('must not run')\n")
    job.write("requirements.txt", "userpkg\n")
    job.write("sub/requirements.txt", "onlyhere\n")
    result = run_job()
    assert result.returncode == 2
    line = error_line(result)
    assert "2 requirements.txt files" in line and "sub/requirements.txt" in line
    assert "must not run" not in result.stderr


def test_missing_folders(run_job: RunJob, job: Job) -> None:
    result = run_job(env={"INPUT_FOLDER": ""})
    assert result.returncode == 2 and "INPUT_FOLDER not set" in error_line(result)
    result = run_job(env={"INPUT_FOLDER": str(job.root / "nowhere")})
    assert result.returncode == 2 and "is not a folder" in error_line(result)


def test_bad_timeout_value(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "")
    result = run_job(env={"RUNNER_TIMEOUT": "soon"})
    assert result.returncode == 2 and "RUNNER_TIMEOUT='soon'" in error_line(result)


def test_a_bad_zip_is_bad_input(job: Job, run_job: RunJob) -> None:
    (job.code / "code.zip").write_bytes(b"not a zip")
    result = run_job()
    assert result.returncode == 2 and "cannot unpack code.zip" in error_line(result)


def test_summary_is_json_even_on_failure(job: Job, run_job: RunJob) -> None:
    run_job()
    summary = json.loads((job.output_folder / "logs" / "run.json").read_text())
    assert summary["exit_code"] == 2 and "no Python script" in summary["error"]


def test_input_variables_set_by_the_caller_win(job: Job, run_job: RunJob, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.txt").write_text("from elsewhere\n")
    job.write("main.py", "import os\nprint(open(os.path.join(os.environ['INPUT_3'], 'data.txt')).read().strip())\n")
    result = run_job(env={"INPUT_3": str(elsewhere)})
    assert result.returncode == 0, result.stderr
    assert "from elsewhere" in result.stdout
