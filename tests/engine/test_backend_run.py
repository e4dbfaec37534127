"""The fixture flavor's images run as oSPARC's backend runs them, in podman (issue 9, point 8).

Both images are checked: the OCI engine's (loaded with `podman load`) and the one both
Dockerfiles give under `podman build`. Each run is the backend's: its variables, binds of
/inputs /outputs /logs owned by its user 8004 (or, in another case, by another UID),
--init, --cpus, --memory, command `run`; the log is read line by line with its progress
expression and log-level rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.backend import BACKEND_UID, Backend, Job
from tests.engine.conftest import EngineSession
from tests.engine.jobs import SCRIPT_PROGRESS, report_of, reporting_job_files
from tests.engine.podman import Podman
from tests.engine.workspace import FLAVOR_DEFAULT, output_files

INIT_PROCESSES = ("catatonit", "podman-init", "docker-init", "tini")


def owners(folder: Path) -> set[tuple[int, int]]:
    return {(path.lstat().st_uid, path.lstat().st_gid) for path in [folder, *folder.rglob("*")]}


@pytest.mark.parametrize("owner", [(BACKEND_UID, BACKEND_UID), (1234, 4321)], ids=["uid-8004", "another-uid"])
def test_a_backend_run(
    podman: Podman, engine: str, image: str, engine_session: EngineSession, owner: tuple[int, int], tmp_path: Path
) -> None:
    job = Job(tmp_path / "job", owner)
    job.stage(reporting_job_files(), values={"factor": 3})
    name = f"run-{engine_session.token}-{owner[0]}-{engine}"
    run = Backend(podman, image).run(job, name, nano_cpus=1_000_000_000, memory=1 << 30)

    assert run.code == 0, run.text
    for file_name in output_files(engine_session.workspace):
        assert (job.outputs / file_name).is_file(), f"{file_name} (fileToKeyMap) is missing:\n{run.text}"
    report = report_of(job.outputs)
    assert (report["uid"], report["gid"]) == owner and report["euid"] != 0  # the job never runs as root
    assert owners(job.outputs) == {owner}, "every output belongs to the mounts' owner"
    assert report["pid"] != 1 and report["pid1"] in INIT_PROCESSES  # --init: the init is PID 1, not the job
    assert report["inputs"] == ["inputs.json", "main.py", "numbers.txt"] and report["values"] == {"factor": 3}
    assert report["fixture_lib"] == "1.0.0" and report["prefix"].startswith("/opt/conda/envs/")
    env = report["env"]
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.0"
    assert env[FLAVOR_DEFAULT[0]] == FLAVOR_DEFAULT[1]
    assert (env["INPUT_FOLDER"], env["OUTPUT_FOLDER"], env["LOG_FOLDER"]) == ("/inputs", "/outputs", "/logs")

    # The backend's progress expression finds the script's four lines and nothing of the entrypoint's or runner's.
    assert [value for _, value in run.progress] == SCRIPT_PROGRESS, run.progress
    assert run.at_level("error") == [], run.text


def test_a_root_owned_0755_output_folder_fails_at_start_with_one_line(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    job = Job(tmp_path / "job", (0, 0))
    job.stage(reporting_job_files())
    job.outputs.chmod(0o755)
    run = Backend(podman, oci_image).run(job, f"root-owned-{engine_session.token}")
    assert run.code == 2, run.text
    (error,) = run.at_level("error")
    assert error.startswith("error: /outputs: owned by 0:0, mode 755, so the job's user 8004:8004 cannot write")
    assert "chown 8004:8004 <folder>" in error
    assert "Permission denied" not in run.text and "Traceback" not in run.text
    assert list(job.outputs.iterdir()) == []  # the script never ran
