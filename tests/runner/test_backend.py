"""The runner as oSPARC's backend runs it and reads it: log lines, progress, resources, GPU, folders, outputs."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
import yaml

from runner.resources import THREAD_VARIABLES, Resources, nvidia_devices
from tests.runner.conftest import REPO, BaseEnv, Job, RunJob, UvRecorder, error_line, runner_command
from tests.support.backend import log_level_of, may_read_as_progress, progress_of

RUNNER_PREFIXES = ("runner: ", "warning: runner: ", "error: runner: ")
THREADS_SCRIPT = f"""\
import json, os
print(json.dumps({{name: os.environ.get(name) for name in {THREAD_VARIABLES!r}}}))
"""


def runner_lines(result: subprocess.CompletedProcess[str], user_lines: tuple[str, ...] = ()) -> list[str]:
    """Every line of the job's log that is not the user's own: each must be one of the runner's."""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line not in user_lines]
    strays = [line for line in lines if not line.startswith(RUNNER_PREFIXES)]
    assert not strays, f"lines that are neither the user's nor the runner's: {strays}"
    return lines


def assert_read_as_oSPARC_should(lines: list[str]) -> None:
    for line in lines:
        assert not may_read_as_progress(line), f"the backend would read progress from {line!r}"
        expected = {"error: ": "ERROR", "warning: ": "WARNING"}.get(line[: line.index(" ") + 1], "INFO")
        assert log_level_of(line) == expected, line


# --- the expression itself: the backend's rule, checked on the lines the README promises --------------------------


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("[PROGRESS] 0.25", 0.25),
        ("[PROGRESS]: 0.5", 0.5),
        ("PROGRESS: 3/4", 0.75),
        ("50%", 0.5),
        ("30 percent", 0.3),
        ("5 percent", None),  # `\d+\s*\d+\s*percent` wants two digits
        ("12 files written", 1.0),  # any line that starts with 1 reads as 100 %: why the runner's never do
        ("0 errors", 0.0),
        ("runner: done: main.py exited with status 0 after 1.2 s", None),
        ("error: runner: 2 Python files and no main.py", None),
    ],
)
def test_the_backends_progress_expression(line: str, value: float | None) -> None:
    assert progress_of(line) == value


def test_a_leading_date_is_dropped_before_reading_progress() -> None:
    assert may_read_as_progress("2026-08-21T10:00:00.123Z [PROGRESS] 0.5")
    assert may_read_as_progress("    0.5 / zero")
    assert not may_read_as_progress("runner: 0.5 / zero")  # `runner:` is no date
    assert not may_read_as_progress("2026-08-21T10:00:00Z runner: 0.5")


def test_the_backends_log_levels() -> None:
    assert log_level_of("error: runner: x") == "ERROR"
    assert log_level_of("  ERR something") == "ERROR"
    assert log_level_of("warning: runner: x") == "WARNING"
    assert log_level_of("runner: error: x") == "INFO"  # the runner's old format: shown as information
    assert log_level_of("Traceback (most recent call last):") == "INFO"


# --- the runner's own lines -------------------------------------------------------------------------------------------


def test_no_runner_line_reads_as_progress_or_at_the_wrong_level(
    job: Job, run_job: RunJob, uv_recorder: UvRecorder, tmp_path: Path
) -> None:
    """Successes, failures, an overlay build, limits, the GPU warning, timeouts and bad input: every line checked."""
    results = []
    backend = {
        "SC_COMP_SERVICES_SCHEDULED_AS": "GPU",
        "SIMCORE_NANO_CPUS_LIMIT": "1000000000",
        "SIMCORE_MEMORY_BYTES_LIMIT": str(1 << 30),
    }
    job.write("main.py", "import userpkg\n")
    job.write("requirements.txt", "userpkg\n")
    results.append(run_job(env=backend))  # overlay built
    results.append(run_job(env=backend))  # overlay reused
    job.write("requirements.txt", "userpkg\nbasepkg==2.0\n")
    results.append(run_job(env={**backend, "RUNNER_OVERLAY_POLICY": "override"}))  # warnings
    (job.code / "requirements.txt").unlink()
    job.write("main.py", "import nothing_here\n")
    results.append(run_job(env=backend))  # ModuleNotFoundError
    job.write("main.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    results.append(run_job(env=backend))  # killed
    job.write("main.py", "import time\ntime.sleep(30)\n")
    results.append(run_job(env={**backend, "RUNNER_TIMEOUT": "0.5", "RUNNER_KILL_GRACE": "1"}))
    (job.code / "main.py").rename(job.code / "first.py")
    job.write("other.py", "")
    results.append(run_job(env=backend))  # two scripts, no main.py: bad input
    results.append(run_job(env={**backend, "RUNNER_CLEAN_OUTPUTS": ""}))  # used output folder: refused
    user = ("Traceback (most recent call last):", '  File "' + str(job.code / "main.py") + '", line 1, in <module>')
    user += ("    import nothing_here", "ModuleNotFoundError: No module named 'nothing_here'")
    codes = [result.returncode for result in results]
    assert codes == [0, 0, 0, 1, 137, 124, 2, 2], [r.stderr for r in results]
    for result in results:
        assert_read_as_oSPARC_should(runner_lines(result, user))
    for result in results[3:]:
        error_line(result)  # one error line, the last


def test_the_users_progress_lines_pass_through_unchanged_and_at_once(
    job: Job, runner_env: dict[str, str], base_env: BaseEnv, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    job.write(
        "main.py",
        f"""\
        import os, sys, time
        print("[PROGRESS] 0.25")  # no flush: the runner makes the script's output unbuffered
        sys.stdout.write("50%\\r\\n")
        deadline = time.time() + 30
        while not os.path.exists({str(go)!r}) and time.time() < deadline:
            time.sleep(0.05)
        print("[PROGRESS] 1/1")
        """,
    )
    env = {**runner_env, "INPUT_FOLDER": str(job.input_folder), "OUTPUT_FOLDER": str(job.output_folder)}
    process = subprocess.Popen(runner_command(base_env.python), cwd=REPO, env=env, stdout=subprocess.PIPE)
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert process.poll() is None, "both lines must arrive while the script still runs"
        go.touch()
        rest = process.stdout.read()
        process.wait()
    finally:
        watchdog.cancel()
    assert first == b"[PROGRESS] 0.25\n" and second == b"50%\r\n"
    assert rest == b"[PROGRESS] 1/1\n"
    assert [progress_of(line.decode()) for line in (first, second, rest)] == [0.25, 0.5, 1.0]


def test_a_last_line_without_newline_does_not_swallow_the_runners_error(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "import sys\nsys.stderr.write('half a line')\nsys.exit(3)\n")
    result = run_job()
    assert result.returncode == 3
    assert "half a line\n" in result.stderr
    assert log_level_of(error_line(result)) == "ERROR"


def test_an_overlay_build_is_never_silent(job: Job, run_job: RunJob, uv_recorder: UvRecorder) -> None:
    """uv resolving for 3 s without a word: the runner says it still works, in lines that are not progress."""
    job.write("main.py", "import userpkg\n")
    job.write("requirements.txt", "userpkg\n")
    env = {"UV_PAUSE_ON": "pip compile", "UV_PAUSE_SECONDS": "3", "RUNNER_HEARTBEAT_SECONDS": "0.5"}
    result = run_job(env=env)
    assert result.returncode == 0, result.stderr
    beats = [line for line in result.stderr.splitlines() if line.startswith("runner: still building the overlay")]
    assert len(beats) >= 3, result.stderr
    assert_read_as_oSPARC_should(beats)


# --- resources --------------------------------------------------------------------------------------------------------


def test_the_cpu_limit_sets_the_thread_counts_and_the_users_win(job: Job, run_job: RunJob) -> None:
    job.write("main.py", THREADS_SCRIPT)
    limits = {"SIMCORE_NANO_CPUS_LIMIT": "1500000000", "SIMCORE_MEMORY_BYTES_LIMIT": str(4 << 30)}
    result = run_job(env={**limits, "OMP_NUM_THREADS": "7"})
    assert result.returncode == 0, result.stderr
    threads = json.loads(result.stdout.splitlines()[0])
    assert threads == {name: ("7" if name == "OMP_NUM_THREADS" else "2") for name in THREAD_VARIABLES}
    assert "runner: limits: 1.5 CPUs (SIMCORE_NANO_CPUS_LIMIT), 4.0 GiB of memory" in result.stderr
    resources = job.summary()["resources"]
    assert resources["cpus"] == 1.5 and resources["memory_bytes"] == 4 << 30  # type: ignore[index]
    assert resources["threads_kept"] == {"OMP_NUM_THREADS": "7"}  # type: ignore[index]


def test_without_a_cpu_limit_the_thread_counts_are_left_alone(job: Job, run_job: RunJob) -> None:
    job.write("main.py", THREADS_SCRIPT)
    result = run_job()
    assert json.loads(result.stdout.splitlines()[0]) == dict.fromkeys(THREAD_VARIABLES)
    assert "limits" not in result.stderr


def test_a_kill_names_the_memory_limit(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = run_job(env={"SIMCORE_MEMORY_BYTES_LIMIT": str(2 << 30)})
    assert result.returncode == 137
    line = error_line(result)
    assert "killed by SIGKILL" in line and "out-of-memory" in line and "2.0 GiB" in line


@pytest.mark.parametrize("scheduled", ["GPU", "CPU", None])
def test_a_gpu_job_without_a_visible_gpu_says_so_once_before_the_script(
    job: Job, run_job: RunJob, scheduled: str | None
) -> None:
    if nvidia_devices():
        pytest.skip("this machine has an NVIDIA device: the no-GPU case cannot be seen here")
    job.write("main.py", "import sys\nprint('script starts', file=sys.stderr)\n")
    result = run_job(env={"SC_COMP_SERVICES_SCHEDULED_AS": scheduled} if scheduled else {})
    lines = result.stderr.splitlines()
    warnings = [line for line in lines if "no NVIDIA device is visible" in line]
    if scheduled != "GPU":
        assert warnings == []
        return
    assert len(warnings) == 1 and warnings[0].startswith("warning: runner: scheduled as a GPU job")
    assert lines.index(warnings[0]) < lines.index("script starts")
    assert job.summary()["resources"]["scheduled_as"] == "GPU"  # type: ignore[index]


def test_a_visible_nvidia_device_silences_the_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm", "null"):
        (tmp_path / name).touch()
    assert nvidia_devices(tmp_path) == ["nvidia0"]
    gpu = Resources.from_environ({"SC_COMP_SERVICES_SCHEDULED_AS": "gpu"})
    gpu.check_gpu({}, tmp_path)
    assert capsys.readouterr().err == ""
    (tmp_path / "nvidia0").unlink()
    gpu.check_gpu({"NVIDIA_VISIBLE_DEVICES": "all"}, tmp_path)
    assert "NVIDIA_VISIBLE_DEVICES=all" in capsys.readouterr().err


# --- folders: LOG_FOLDER, the flat and the folder layouts -------------------------------------------------------------


def test_the_record_goes_to_log_folder(job: Job, run_job: RunJob, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    job.write("main.py", "print('hello')\n")
    result = run_job(env={"LOG_FOLDER": str(logs)})
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in job.output_folder.iterdir()) == sorted(
        [f"output_{n}" for n in range(1, 5)] + [f"output_{n}.zip" for n in range(1, 5)]
    )
    assert "hello" in (logs / "run.log").read_text()
    assert json.loads((logs / "run.json").read_text())["folders"]["log_folder"] == str(logs)


def test_an_unwritable_log_folder_leaves_the_log_stream_as_the_record(
    job: Job, run_job: RunJob, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    job.write("main.py", "print('still runs')\n")
    result = run_job(env={"LOG_FOLDER": str(blocker / "logs")})
    assert result.returncode == 0, result.stderr
    assert "still runs" in result.stdout
    assert "warning: runner: cannot write the run record" in result.stderr
    assert (job.output_folder / "output_1.zip").exists()


FLAT_SCRIPT = """\
import json, os
from pathlib import Path

folder = Path(os.environ["INPUT_FOLDER"])
print("INPUT_N", sorted({os.environ[f"INPUT_{n}"] for n in range(1, 6)}) == [str(folder)])
print("data", (Path(os.environ["INPUT_2"]) / "data.csv").read_text().strip())
print("values", json.loads((folder / "inputs.json").read_text()))
print("helper", __import__("helper").X)
"""


def test_the_flat_layout_as_the_backend_stages_it(job: Job, run_job: RunJob) -> None:
    for child in job.input_folder.iterdir():
        child.rmdir()
    (job.input_folder / "main.py").write_text(FLAT_SCRIPT)
    (job.input_folder / "helper.py").write_text("X = 42\n")  # from the user's unpacked code zip
    (job.input_folder / "data.csv").write_text("a,b\n")
    (job.input_folder / "inputs.json").write_text('{"input_3": null}')
    # The image's service.cli/run exports INPUT_N=$INPUT_FOLDER/input_N whether or not it exists: no warning.
    named = {f"INPUT_{n}": str(job.input_folder / f"input_{n}") for n in range(1, 6)}
    result = run_job(env=named)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["INPUT_N True", "data a,b", "values {'input_3': None}", "helper 42"]
    assert "warning" not in result.stderr
    assert job.summary()["folders"]["layout"] == "flat"  # type: ignore[index]


def test_a_zip_in_the_flat_layout_is_data_and_left_alone(job: Job, run_job: RunJob) -> None:
    """oSPARC unpacks code zips itself: a zip still in /inputs is a port of type data:application/zip."""
    for child in job.input_folder.iterdir():
        child.rmdir()
    (job.input_folder / "main.py").write_text(
        "import os, zipfile\nprint(os.getcwd() == os.environ['INPUT_FOLDER'], zipfile.ZipFile('data.zip').namelist())\n"
    )
    with zipfile.ZipFile(job.input_folder / "data.zip", "w") as bundle:
        bundle.writestr("other.py", "raise SystemExit('a zip of data is not code')\n")
    result = run_job()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["True ['other.py']"]
    (job.input_folder / "main.py").unlink()
    assert "no Python script in" in error_line(run_job())
    assert "(data.zip left zipped: in the flat layout a zip is a port's data)" in error_line(run_job())


def test_a_mixed_layout_points_each_input_at_what_exists(job: Job, run_job: RunJob, tmp_path: Path) -> None:
    for child in job.input_folder.iterdir():
        child.rmdir()
    (job.input_folder / "main.py").write_text(
        "import os\nfor n in (1, 2, 3): print(f'INPUT_{n}', os.environ[f'INPUT_{n}'])\n"
    )
    (job.input_folder / "input_2").mkdir()  # a user's zip that held input_2/
    result = run_job(env={"INPUT_3": str(tmp_path / "gone")})
    assert result.returncode == 0, result.stderr
    folder = str(job.input_folder)
    assert result.stdout.splitlines() == [f"INPUT_1 {folder}", f"INPUT_2 {folder}/input_2", f"INPUT_3 {folder}"]
    assert f"warning: runner: INPUT_3={tmp_path / 'gone'} does not exist" in result.stderr


# --- outputs ----------------------------------------------------------------------------------------------------------


def test_every_output_exists_after_a_failed_script_and_a_failed_setup(job: Job, run_job: RunJob) -> None:
    job.write(
        "main.py", "import os\nopen(os.path.join(os.environ['OUTPUT_3'], 'part.txt'), 'w')\nraise SystemExit(5)\n"
    )
    assert run_job().returncode == 5
    for n in range(1, 5):
        assert zipfile.ZipFile(job.output_folder / f"output_{n}.zip").namelist() == (["part.txt"] if n == 3 else [])
    job.write("second.py", "")
    (job.code / "main.py").rename(job.code / "first.py")
    assert run_job().returncode == 2
    assert all((job.output_folder / f"output_{n}.zip").is_file() for n in range(1, 5))


def test_a_zip_is_complete_or_absent(job: Job, run_job: RunJob) -> None:
    """Reading /proc/self/mem at offset 0 fails (EIO): a real failure in the middle of writing output_1.zip."""
    job.write(
        "main.py",
        """\
        import os
        open(os.path.join(os.environ["OUTPUT_1"], "a.txt"), "w").write("a")
        os.symlink("/proc/self/mem", os.path.join(os.environ["OUTPUT_1"], "b.bin"))
        open(os.path.join(os.environ["OUTPUT_2"], "ok.txt"), "w").write("ok")
        """,
    )
    result = run_job()
    assert result.returncode == 4
    assert "cannot zip the outputs: output_1.zip" in error_line(result)
    assert not (job.output_folder / "output_1.zip").exists()
    assert zipfile.ZipFile(job.output_folder / "output_2.zip").namelist() == ["ok.txt"]
    assert not [p for p in job.output_folder.iterdir() if p.name.startswith(".")], "no partial archive left"


def test_a_used_output_folder_is_refused_and_left_alone(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "import os\nopen(os.path.join(os.environ['OUTPUT_1'], 'first.txt'), 'w').write('1')\n")
    assert run_job().returncode == 0
    before = {p: p.read_bytes() for p in job.output_folder.rglob("*") if p.is_file()}
    job.write("main.py", "raise SystemExit('must not run')\n")
    result = run_job(env={"RUNNER_CLEAN_OUTPUTS": ""})
    assert result.returncode == 2
    assert "already holds files from an earlier run: logs, output_1, output_1.zip" in error_line(result)
    assert "must not run" not in result.stderr
    assert {p: p.read_bytes() for p in job.output_folder.rglob("*") if p.is_file()} == before


def test_cleaning_removes_only_what_the_runner_made(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "import os\nopen(os.path.join(os.environ['OUTPUT_1'], 'first.txt'), 'w').write('1')\n")
    assert run_job().returncode == 0
    job.write("main.py", "import os\nopen(os.path.join(os.environ['OUTPUT_2'], 'second.txt'), 'w').write('2')\n")
    result = run_job("--clean-outputs", env={"RUNNER_CLEAN_OUTPUTS": ""})
    assert result.returncode == 0, result.stderr
    assert zipfile.ZipFile(job.output_folder / "output_1.zip").namelist() == []  # the earlier file is gone
    assert zipfile.ZipFile(job.output_folder / "output_2.zip").namelist() == ["second.txt"]
    (job.output_folder / "notes.txt").write_text("mine")
    result = run_job()
    assert result.returncode == 2
    assert "holds files the runner did not make: notes.txt" in error_line(result)
    assert (job.output_folder / "output_2.zip").exists()


# --- the ModuleNotFoundError hint ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "requirements", "expected"),
    [
        ("import nothing_here", None, "add a requirements.txt next to main.py with a line 'nothing_here'"),
        ("import sklearn", None, "with a line 'scikit-learn', the package that provides 'sklearn'"),
        ("import nothing_here", "basepkg\n", "add to requirements.txt a line 'nothing_here'"),
    ],
)
def test_a_missing_module_ends_with_the_way_to_add_it(
    job: Job, run_job: RunJob, script: str, requirements: str | None, expected: str
) -> None:
    job.write("main.py", script + "\n")
    if requirements:
        job.write("requirements.txt", requirements)
    result = run_job()
    assert result.returncode == 1
    line = error_line(result)
    module = script.split()[-1]
    assert line.startswith(f"error: runner: main.py failed: no module named '{module}' (")
    assert expected in line


def test_a_missing_submodule_is_not_a_package_to_add(job: Job, run_job: RunJob) -> None:
    job.write("main.py", "import basepkg.nothing\n")
    line = error_line(run_job())
    assert "requirements.txt" not in line and "main.py exited with status 1" in line


# --- the flavors' metadata and the runner agree ----------------------------------------------------------------------


FLAVORS = sorted(folder.name for folder in (REPO / "flavors").iterdir() if folder.is_dir())
PORT_VARIABLES_SCRIPT = """\
import json, os
print(json.dumps(sorted(name for name in os.environ if name.startswith(("INPUT_", "OUTPUT_")))))
"""


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_flavors_ports_are_the_runners(flavor: str, job: Job, run_job: RunJob) -> None:
    """Every flavor folder, shipped or added: each input port is a variable the script gets, each output a file left.

    Read from the YAML as oSPARC reads it (not through the CLI's validation, which refuses such ports too).
    """
    metadata = yaml.safe_load((REPO / "flavors" / flavor / "metadata.yml").read_text())
    job.write("main.py", PORT_VARIABLES_SCRIPT)
    result = run_job()
    assert result.returncode == 0, result.stderr
    variables = set(json.loads(result.stdout))
    for key in metadata["inputs"]:
        assert key.upper() in variables, f"input port {key}: the runner exports no {key.upper()}"
    for key, port in metadata["outputs"].items():
        for name in port.get("fileToKeyMap") or {key: key}:  # without one, oSPARC reads the port's key
            assert (job.output_folder / name).is_file(), f"output port {key}: the runner leaves no {name}"


def test_a_runner_bug_ends_as_a_failed_job_whose_traceback_reads_as_the_runners(
    job: Job, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A fault injected where a bug could be: the traceback's lines (`    0.5 / zero`) must not read as progress."""
    import runner.job

    def bug(*_args: object) -> None:
        zero = 0
        0.5 / zero  # the bug: a traceback line that, unmarked, would read as 50 % progress

    job.write("main.py", "raise SystemExit('must not run')\n")
    monkeypatch.setattr(runner.job, "find_entrypoint", bug)
    env = {"INPUT_FOLDER": str(job.input_folder), "OUTPUT_FOLDER": str(job.output_folder), "PATH": os.defpath}
    assert runner.job.run_job(runner.job.Options(), env) == 70
    lines = capfd.readouterr().err.splitlines()
    assert "runner:     0.5 / zero  # the bug: a traceback line that, unmarked, would read as 50 % progress" in lines
    assert lines[-1].startswith(
        "error: runner: internal error: ZeroDivisionError: float division by zero (a runner bug"
    )
    assert_read_as_oSPARC_should(lines)
    assert json.loads((job.output_folder / "logs" / "run.json").read_text())["status"] == "setup-failed"
    assert (job.output_folder / "output_4.zip").is_file()
