"""What the runner does with the backend's variables and signals, seen from outside the container (issue 9).

These runs check the runner's side of the contract in the real image: thread counts from
SIMCORE_NANO_CPUS_LIMIT, the record in LOG_FOLDER, every declared output after a failing
script, the GPU warning, and a SIGKILL in the middle of an overlay build followed by a clean
run on the same overlay cache. The thread counts and the SIGKILL run on both images (the
OCI engine's and the Dockerfiles'), the others on the OCI engine's.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.backend import Backend, Job
from tests.engine.conftest import EngineSession
from tests.engine.jobs import FAILING_SCRIPT, OVERLAY_SCRIPT, read_zip_member, report_of, reporting_job_files
from tests.engine.podman import Podman
from tests.engine.slow_sdist import MARKER_VARIABLE, VALUE, write_sdist
from tests.engine.workspace import output_files

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
RUNNER_CACHE_DIR = "/var/cache/osparc-runner"  # common/Dockerfile
SOURCE_BUILDER = 8006  # scu-src, common/Dockerfile


def test_thread_variables_follow_the_cpu_limit_unless_set(
    podman: Podman, engine: str, image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    job = Job(tmp_path / "job")
    job.stage(reporting_job_files())
    backend = Backend(podman, image, settings_env={"MKL_NUM_THREADS": "7"})  # a service setting wins
    run = backend.run(job, f"threads-{engine_session.token}-{engine}", nano_cpus=2_000_000_000)
    assert run.code == 0, run.text
    env = report_of(job.outputs)["env"]
    assert env["SIMCORE_NANO_CPUS_LIMIT"] == "2000000000"
    assert {name: env.get(name) for name in THREAD_VARIABLES} == {
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "7",
        "OPENBLAS_NUM_THREADS": "2",
        "NUMEXPR_NUM_THREADS": "2",
    }


def test_the_runner_keeps_its_record_in_log_folder(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    job = Job(tmp_path / "job")
    job.stage(reporting_job_files())
    run = Backend(podman, oci_image).run(job, f"logs-{engine_session.token}")
    assert run.code == 0, run.text
    assert sorted(path.name for path in job.logs.iterdir()) == ["run.json", "run.log"]  # no overlay: no lock
    record = json.loads((job.logs / "run.json").read_text())
    assert (record["exit_code"], record["status"], record["script"]) == (0, "succeeded", "main.py")
    assert record["folders"]["log_folder"] == "/logs" and record["folders"]["layout"] == "flat"
    assert set(output_files(engine_session.workspace)) <= {output["zip"] for output in record["outputs"]}
    # run.log is the runner's part of the log stream, the script's lines included, down to the last line
    copied = (job.logs / "run.log").read_text().splitlines()
    assert "[PROGRESS] 1/4" in copied and copied[-1] == run.lines[-1]
    assert [line for line in copied if line in run.lines] == copied, run.text


def test_a_failing_script_still_leaves_every_declared_output(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    job = Job(tmp_path / "job")
    job.stage({"main.py": FAILING_SCRIPT})
    run = Backend(podman, oci_image).run(job, f"failing-{engine_session.token}")
    assert run.code != 0
    for file_name in output_files(engine_session.workspace):
        assert (job.outputs / file_name).is_file(), f"{file_name} (fileToKeyMap) is missing after a failure"
    assert read_zip_member(job.outputs / "output_1.zip", "partial.txt") == b"written before the failure\n"
    assert any("failed on purpose" in line for line in run.lines)
    assert run.at_level("error"), "the failure must reach the user as an error line"


def test_a_gpu_job_without_a_gpu_is_warned_about_before_the_script(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    job = Job(tmp_path / "job")
    job.stage(reporting_job_files())
    run = Backend(podman, oci_image).run(job, f"gpu-{engine_session.token}", scheduled_as="GPU")
    assert run.code == 0, run.text
    first_script_line = run.lines.index("[PROGRESS] 1/4")
    warnings = [line for line in run.lines[:first_script_line] if line in run.at_level("warning")]
    assert any("GPU" in line for line in warnings), run.text


def test_sigkill_in_the_middle_of_an_overlay_then_a_clean_run(
    podman: Podman, engine: str, image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    """The backend cancels with SIGKILL; the next job on the same overlay cache must build and run cleanly.

    The sdist's build runs as the image's source builder, which may write nowhere shared: it
    leaves its "I am building" marker in a folder of the test's, open to every user.
    """
    wheels = tmp_path / "wheels"
    write_sdist(wheels)
    cache = tmp_path / "cache"
    cache.mkdir()
    signals = tmp_path / "signals"
    signals.mkdir()
    signals.chmod(0o777)
    binds = [(cache, RUNNER_CACHE_DIR), (wheels, "/wheels:ro")]
    index = {"UV_FIND_LINKS": "/wheels", "UV_OFFLINE": "1"}
    # Built from source on purpose: the overlay builds wheels only unless requirements.txt allows it.
    requirements = "--no-binary slowpkg\nslowpkg==1.0\n"
    files: dict[str, str | bytes] = {"main.py": OVERLAY_SCRIPT, "requirements.txt": requirements}

    first = Job(tmp_path / "first")
    first.stage(files)
    held = Backend(podman, image, settings_env={**index, MARKER_VARIABLE: "/signals/slow-build-started"})
    killed = held.start_and_kill_when(
        first,
        f"killed-{engine_session.token}-{engine}",
        signals / "slow-build-started",
        binds=[*binds, (signals, "/signals")],
    )
    assert killed.code == 137, killed.text  # 128 + SIGKILL, as the backend sees a cancelled job
    # The sdist's build code ran as scu-src: not root, not the job's user (runner/README.md, "In the image").
    assert (signals / "slow-build-started").read_text() == f"building as {SOURCE_BUILDER}:{SOURCE_BUILDER}\n"
    assert [path.name for path in (cache / "overlays").iterdir()] == []  # nothing half-built is ever in overlays/

    second = Job(tmp_path / "second")
    second.stage(files)
    run = Backend(podman, image, settings_env=index).run(
        second, f"after-kill-{engine_session.token}-{engine}", binds=binds
    )
    assert run.code == 0, run.text
    assert read_zip_member(second.outputs / "output_1.zip", "slowpkg.txt").decode() == VALUE
    assert not run.at_level("error"), run.text
    assert run.progress == [], "the runner's overlay lines must not read as progress"
