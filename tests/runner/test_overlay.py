"""The requirements overlay end to end: layered on the base, conflicts refused, cached, locked, rebuilt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runner.conftest import (
    REPO,
    BaseEnv,
    Job,
    RunJob,
    UvRecorder,
    error_line,
    make_base_env,
    real_uv,
    runner_command,
    write_uv_recorder,
)

WHERE_SCRIPT = """\
import json, os, sys
import basepkg
report = {"basepkg": basepkg.VERSION, "basepkg_file": basepkg.__file__, "path": sys.path, "executable": sys.executable}
for name in ("userpkg", "onlyhere", "needsnew", "fancy", "gputool", "torch"):
    try:
        module = __import__(name)
        report[name] = module.__file__
    except ImportError:
        pass
open(os.path.join(os.environ["OUTPUT_1"], "report.json"), "w").write(json.dumps(report))
print("script ran")
"""


def report(job: Job) -> dict[str, object]:
    return json.loads((job.output_folder / "output_1" / "report.json").read_text())


def overlays(cache: Path) -> list[Path]:
    folder = cache / "overlays"
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.fixture()
def cache_dir(runner_env: dict[str, str]) -> Path:
    return Path(runner_env["RUNNER_CACHE_DIR"])


def test_overlay_adds_packages_and_never_reinstalls_the_base(
    job: Job, run_job: RunJob, base_env: BaseEnv, cache_dir: Path
) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg  # needs basepkg>=1, which the base has\nbasepkg>=1\n")
    result = run_job()
    assert result.returncode == 0, result.stderr
    seen = report(job)
    [overlay] = overlays(cache_dir)
    assert str(seen["userpkg"]).startswith(str(overlay))
    assert seen["basepkg"] == "1.0" and str(seen["basepkg_file"]).startswith(str(base_env.site_packages))
    site_packages = next((overlay / "venv" / "lib").glob("python*/site-packages"))
    assert not list(site_packages.glob("basepkg*")), "the base's package was reinstalled into the overlay"
    summary = job.summary()
    packages = summary["overlay"]["packages"]  # type: ignore[index]
    assert [(p["name"], p["version"]) for p in packages] == [("userpkg", "1.0")]
    assert packages[0]["hashes"][0].startswith("sha256:")
    assert summary["overlay"]["reused"] is False  # type: ignore[index]
    assert "userpkg==1.0" in (job.output_folder / "logs" / "requirements.lock.txt").read_text()


def test_overlay_sees_exactly_the_base_site_folders(job: Job, run_job: RunJob, base_env: BaseEnv) -> None:
    """The base is a venv: the overlay must see the venv's site-packages, not its interpreter's."""
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "onlyhere\n")
    assert run_job().returncode == 0
    paths = [p for p in report(job)["path"] if "site-packages" in p]  # type: ignore[union-attr]
    interpreter_site = subprocess.run(
        [
            str(base_env.python),
            "-c",
            "import sys, sysconfig; print(sysconfig.get_paths(vars={'base': sys.base_prefix})['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert "/overlays/" in paths[0]
    assert paths[1:] == [str(base_env.site_packages)]
    assert interpreter_site not in paths


def test_requirements_the_base_satisfies_need_no_overlay(job: Job, run_job: RunJob, uv_recorder: UvRecorder) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "basepkg>=1.0,<2\n")
    result = run_job()
    assert result.returncode == 0, result.stderr
    assert "no overlay needed" in result.stderr
    assert uv_recorder.calls() == []


def test_a_conflicting_pin_is_refused_before_the_script(job: Job, run_job: RunJob, uv_recorder: UvRecorder) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "onlyhere\nbasepkg==2.0\n")
    result = run_job()
    assert result.returncode == 3
    line = error_line(result)
    assert "requirements.txt line 2: 'basepkg==2.0'" in line
    assert "basepkg 1.0 is installed by the flavor" in line
    assert "RUNNER_OVERLAY_POLICY=override" in line
    assert "script ran" not in result.stdout
    assert not (job.output_folder / "output_1" / "report.json").exists()
    assert uv_recorder.calls() == []  # refused from our own comparison, before any resolution


def test_a_transitive_conflict_is_refused_before_the_script(job: Job, run_job: RunJob, cache_dir: Path) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "needsnew\n")
    result = run_job()
    assert result.returncode == 3
    line = error_line(result)
    assert "'basepkg>=2' (needed by needsnew 1.0)" in line and "basepkg 1.0 is installed by the flavor" in line
    assert "script ran" not in result.stdout
    assert overlays(cache_dir) == []  # the failed build left nothing behind


def test_an_extra_that_conflicts_is_caught(job: Job, run_job: RunJob) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "fancy\n")
    assert run_job().returncode == 0  # without the extra, fancy needs nothing from the base
    job.write("requirements.txt", "fancy[new]\n")
    result = run_job()
    assert result.returncode == 3 and "'basepkg>=2' (needed by fancy 1.0)" in error_line(result)


def test_override_policy_shadows_the_base_with_a_warning(job: Job, run_job: RunJob) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "basepkg==2.0\n")
    result = run_job(env={"RUNNER_OVERLAY_POLICY": "override"})
    assert result.returncode == 0, result.stderr
    assert (
        "warning: runner: RUNNER_OVERLAY_POLICY=override: 'basepkg==2.0' will shadow the base's basepkg 1.0"
        in result.stderr
    )
    assert report(job)["basepkg"] == "2.0"
    assert job.summary()["overlay"]["shadowed"] == ["basepkg"]  # type: ignore[index]


def test_override_policy_shadows_for_a_transitive_need(job: Job, run_job: RunJob) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "needsnew\n")
    result = run_job("--overlay-policy", "override")
    assert result.returncode == 0, result.stderr
    assert report(job)["basepkg"] == "2.0"


def test_an_unknown_policy_is_bad_input(job: Job, run_job: RunJob) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "onlyhere\n")
    result = run_job(env={"RUNNER_OVERLAY_POLICY": "yolo"})
    assert result.returncode == 2 and "unknown RUNNER_OVERLAY_POLICY 'yolo'" in error_line(result)


def test_second_identical_run_reuses_the_overlay_without_uv(
    job: Job, run_job: RunJob, uv_recorder: UvRecorder, cache_dir: Path
) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg\nonlyhere==0.3\n")
    started = time.monotonic()
    first = run_job()
    cold = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    assert uv_recorder.count("pip sync") == 1 and uv_recorder.count("pip compile") == 1
    calls_after_first = len(uv_recorder.calls())
    # Same requirements, other order and comments: same overlay.
    job.write("requirements.txt", "# pinned\nonlyhere==0.3\nuserpkg\n")
    started = time.monotonic()
    second = run_job()
    warm = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert len(uv_recorder.calls()) == calls_after_first, "the reused overlay must not call uv at all"
    assert "reused" in second.stderr
    assert job.summary()["overlay"]["reused"] is True  # type: ignore[index]
    assert len(overlays(cache_dir)) == 1
    print(f"cold overlay run {cold:.2f}s, cached overlay run {warm:.2f}s")
    assert warm < cold


def test_concurrent_runs_build_one_overlay(
    job: Job, runner_env: dict[str, str], base_env: BaseEnv, uv_recorder: UvRecorder, cache_dir: Path, tmp_path: Path
) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg\n")
    processes = []
    for n in range(2):
        output = tmp_path / f"out{n}"
        env = {
            **runner_env,
            "INPUT_FOLDER": str(job.input_folder),
            "OUTPUT_FOLDER": str(output),
            "UV_PAUSE_ON": "pip compile",
            "UV_PAUSE_SECONDS": "2",
        }
        processes.append(
            subprocess.Popen(
                runner_command(base_env.python),
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], results
    assert uv_recorder.count("venv") == 1 and uv_recorder.count("pip sync") == 1, uv_recorder.calls()
    stderr = "".join(err for _, err in results)
    assert "waiting for another run to finish building overlay" in stderr and "reused" in stderr
    assert len(overlays(cache_dir)) == 1


def test_a_killed_build_leaves_a_staging_folder_the_next_run_sweeps(
    job: Job, runner_env: dict[str, str], base_env: BaseEnv, uv_recorder: UvRecorder, cache_dir: Path, run_job: RunJob
) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg\n")
    env = {
        **runner_env,
        "INPUT_FOLDER": str(job.input_folder),
        "OUTPUT_FOLDER": str(job.output_folder),
        "UV_PAUSE_ON": "pip sync",
        "UV_PAUSE_SECONDS": "120",
    }
    process = subprocess.Popen(
        runner_command(base_env.python),
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while uv_recorder.count("pip sync") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv_recorder.count("pip sync") == 1, "the build never reached the install step"
    os.killpg(process.pid, signal.SIGKILL)  # the runner and its uv, mid-install
    process.wait(timeout=30)
    # Built in a staging folder, from a copy of the job's files, and published by one rename: a killed build leaves
    # no overlay, only those two folders.
    assert overlays(cache_dir) == []
    [request, staging] = sorted(
        (cache_dir / "building").iterdir(), key=lambda path: not path.name.startswith("request.")
    )
    assert request.name.startswith("request.") and (request / str(job.code / "requirements.txt").lstrip("/")).is_file()
    assert (staging / "venv").is_dir()

    result = run_job()
    assert result.returncode == 0, result.stderr
    assert uv_recorder.count("venv") == 2 and uv_recorder.count("pip sync") == 2
    [overlay] = overlays(cache_dir)
    assert (overlay / "overlay.json").exists()
    assert not staging.exists() and not request.exists(), "the next request sweeps what the killed build left"
    assert str(report(job)["userpkg"]).startswith(str(overlay))


def test_cache_list_and_prune(
    job: Job, run_job: RunJob, runner_env: dict[str, str], base_env: BaseEnv, cache_dir: Path
) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg\n")
    assert run_job().returncode == 0

    def cache(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            runner_command(base_env.python, "cache", *args),
            cwd=REPO,
            env=runner_env,
            capture_output=True,
            text=True,
            check=True,
        )

    [entry] = json.loads(cache("list", "--json").stdout)["overlays"]
    assert entry["state"] == "ready" and entry["requirements"] == ["userpkg"] and entry["size"] > 0
    assert entry["key"] in cache("list").stdout
    assert cache("prune").stdout == ""  # recently used: kept
    assert entry["key"] in cache("prune", "--all", "--dry-run").stdout
    assert overlays(cache_dir)
    assert f"removed {entry['key']}" in cache("prune", "--all").stdout
    assert overlays(cache_dir) == []


def test_a_package_that_does_not_exist(job: Job, run_job: RunJob, cache_dir: Path) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg\nno-such-package-anywhere==1.0\n")
    result = run_job()
    assert result.returncode == 3
    line = error_line(result)
    assert line.startswith("error: runner: cannot resolve requirements.txt:")
    assert "no-such-package-anywhere" in line and "UV_INDEX_URL" in line
    assert "script ran" not in result.stdout
    assert overlays(cache_dir) == []


def test_a_line_that_does_not_parse(job: Job, run_job: RunJob, uv_recorder: UvRecorder) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg\nuserpkg>>1\n")
    result = run_job()
    assert result.returncode == 2
    line = error_line(result)
    assert "requirements.txt line 2: cannot parse 'userpkg>>1'" in line and "PEP 508" in line
    assert uv_recorder.calls() == []


def test_find_links_line_relative_to_the_requirements(job: Job, run_job: RunJob, wheelhouse: Path) -> None:
    """Wheels shipped with the code, found through a --find-links line, no UV_FIND_LINKS."""
    shipped = job.code / "wheels"
    shipped.mkdir()
    (shipped / "onlyhere-0.3-py3-none-any.whl").write_bytes((wheelhouse / "onlyhere-0.3-py3-none-any.whl").read_bytes())
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "--find-links ./wheels\nonlyhere\n")
    result = run_job(env={"UV_FIND_LINKS": ""})
    assert result.returncode == 0, result.stderr
    assert "onlyhere" in report(job)


def test_a_local_index_url(job: Job, run_job: RunJob, simple_index: Path) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", f"--index-url {simple_index.as_uri()}\nuserpkg\n")
    result = run_job(env={"UV_FIND_LINKS": ""})
    assert result.returncode == 0, result.stderr
    assert "userpkg" in report(job)


def test_uv_index_url_from_the_environment(job: Job, run_job: RunJob, simple_index: Path) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "onlyhere\n")
    result = run_job(env={"UV_FIND_LINKS": "", "UV_INDEX_URL": simple_index.as_uri()})
    assert result.returncode == 0, result.stderr


def test_runner_uv_names_the_executable(
    job: Job, run_job: RunJob, uv_recorder: UvRecorder, runner_env: dict[str, str]
) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "onlyhere\n")
    path = os.pathsep.join(p for p in runner_env["PATH"].split(os.pathsep) if p != str(uv_recorder.folder))
    result = run_job(env={"RUNNER_UV": str(uv_recorder.folder / "uv"), "PATH": path})
    assert result.returncode == 0, result.stderr
    assert uv_recorder.count("pip sync") == 1


def test_the_uv_next_to_the_base_wins_over_one_on_path(
    job: Job, run_job: RunJob, uv_recorder: UvRecorder, wheelhouse: Path, tmp_path: Path
) -> None:
    """The base's uv is the flavor's locked one; PATH may start with any other (a CLI virtualenv's, the machine's)."""
    base = make_base_env(tmp_path / "base-with-uv", wheelhouse)
    locked = write_uv_recorder(base.python.parent, tmp_path / "locked-uv-calls.log")
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "onlyhere\n")
    result = run_job(python=base.python)  # uv_recorder is first on PATH
    assert result.returncode == 0, result.stderr
    assert locked.count("pip sync") == 1
    assert uv_recorder.calls() == []


def test_without_uv_a_requirements_file_is_an_overlay_error(
    job: Job, run_job: RunJob, uv_recorder: UvRecorder, runner_env: dict[str, str]
) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "onlyhere\n")
    result = run_job(env={"PATH": "/nonexistent"})
    assert result.returncode == 3 and "no uv was found" in error_line(result)


def test_an_empty_requirements_file_runs_on_the_base(job: Job, run_job: RunJob, uv_recorder: UvRecorder) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "# nothing yet\n\n")
    result = run_job()
    assert result.returncode == 0 and uv_recorder.calls() == []


# --- the duplicate-CUDA guard -------------------------------------------------------------------------------------


def test_cuda_wheels_on_a_conda_cuda_base_are_refused(
    job: Job, run_job: RunJob, conda_cuda_prefix: Path, uv_recorder: UvRecorder
) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "gputool\n")
    result = run_job(env={"RUNNER_BASE_PREFIX": str(conda_cuda_prefix)})
    assert result.returncode == 3
    line = error_line(result)
    assert (
        "nvidia-cudnn-cu12 9.1.0.70 (needed by gputool) duplicates cudnn 9.1.0 from the flavor's conda environment"
        in line
    )
    assert "RUNNER_OVERLAY_POLICY=override" in line
    assert uv_recorder.count("pip sync") == 0 and uv_recorder.count("venv") == 0  # refused before installing
    assert "script ran" not in result.stdout


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        ("tensorflow[and-cuda]==2.17.0", "tensorflow[and-cuda]==2.17.0 duplicates cuda-version 12.4"),
        ("torch==2.5.0+cu124", "torch==2.5.0+cu124 duplicates cuda-version 12.4"),
    ],
)
def test_cuda_framework_wheels_are_refused_by_name(
    job: Job, run_job: RunJob, conda_cuda_prefix: Path, uv_recorder: UvRecorder, requirement: str, expected: str
) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", requirement + "\n")
    result = run_job(env={"RUNNER_BASE_PREFIX": str(conda_cuda_prefix)})
    assert result.returncode == 3
    assert expected in error_line(result)
    assert uv_recorder.calls() == []


def test_cuda_wheels_are_fine_without_conda_cuda(job: Job, run_job: RunJob) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "gputool\n")
    result = run_job()
    assert result.returncode == 0, result.stderr


def test_cuda_guard_override(job: Job, run_job: RunJob, conda_cuda_prefix: Path) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "gputool\n")
    result = run_job(env={"RUNNER_BASE_PREFIX": str(conda_cuda_prefix), "RUNNER_OVERLAY_POLICY": "override"})
    assert result.returncode == 0, result.stderr
    assert "installing duplicate CUDA libraries: nvidia-cudnn-cu12" in result.stderr


@pytest.mark.parametrize("how", ["environment", "requirements line"])
def test_an_extra_index_url(job: Job, run_job: RunJob, simple_index: Path, how: str) -> None:
    job.write("main.py", WHERE_SCRIPT)
    if how == "environment":
        job.write("requirements.txt", "userpkg\n")
        env = {"UV_FIND_LINKS": "", "UV_EXTRA_INDEX_URL": simple_index.as_uri()}
    else:
        job.write("requirements.txt", f"--extra-index-url {simple_index.as_uri()}\nuserpkg\n")
        env = {"UV_FIND_LINKS": ""}
    result = run_job(env=env)
    assert result.returncode == 0, result.stderr
    assert "userpkg" in report(job)


def test_an_unusable_cache_folder_is_one_line(job: Job, run_job: RunJob, tmp_path: Path) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_job(env={"RUNNER_CACHE_DIR": str(blocker / "cache")})
    assert result.returncode == 3
    assert "RUNNER_CACHE_DIR" in error_line(result) and "Traceback" not in result.stderr


# --- packaging: only when something must be compared or built -------------------------------------------------------


def test_a_cached_overlay_never_imports_packaging(job: Job, run_job: RunJob) -> None:
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg\n")
    first = run_job()
    assert first.returncode == 0, first.stderr
    env = {"PYTHONPROFILEIMPORTTIME": "1"}  # -X importtime for the runner (and the script, which imports none)
    second = run_job(env=env)
    assert second.returncode == 0 and "reused" in second.stderr, second.stderr
    imported = [
        line.rsplit("|", 1)[-1].strip() for line in second.stderr.splitlines() if line.startswith("import time")
    ]
    assert "runner.overlay" in imported
    assert [name for name in imported if name.startswith("packaging")] == []


def test_a_base_without_packaging_is_one_line(job: Job, run_job: RunJob, tmp_path: Path) -> None:
    bare = tmp_path / "bare-base"
    subprocess.run([real_uv(), "venv", str(bare), "--python", sys.executable, "--quiet"], check=True)
    job.write("main.py", WHERE_SCRIPT)
    job.write("requirements.txt", "userpkg\n")
    result = run_job(python=bare / "bin" / "python")
    assert result.returncode == 3
    line = error_line(result)
    assert "requirements.txt needs the 'packaging' library" in line and str(bare) in line
    assert "runner feature in pixi.toml" in line
