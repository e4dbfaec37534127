"""Root's supervisor in the image, at its edges (runner/supervisor.py, runner/staging.py; issue 14).

- A package shipped with the code travels to root as a copy: root builds it (as scu-src,
  with a throwaway uv cache) from what the job could read, and the record names the job's
  paths, not root's copy.
- A requirements file that is a link to a file the job's user may not read is refused as the
  job's user would see it: root never opens the job's files.
- A cache a job user could have written (an older image's, or a forged overlay with a
  consistent seal) is never trusted: emptied or discarded, and the overlay built again.
- Mounts owned by a builder's UID would make the job user a builder: refused in one line.
- SIGTERM in the middle of a build: root stops the builder and removes what it made.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from runner import seal
from tests.engine.backend import BACKEND_UID, Backend, Job, Run
from tests.engine.conftest import EngineSession
from tests.engine.podman import Podman
from tests.engine.slow_sdist import BACKEND, MARKER_VARIABLE, METADATA, PYPROJECT, VALUE, write_sdist
from tests.runner.wheels import FakeWheel, build_wheel

RUNNER_CACHE_DIR = "/var/cache/osparc-runner"  # common/Dockerfile
INDEX = {"UV_FIND_LINKS": "/wheels", "UV_OFFLINE": "1"}

IMPORTS = """\
import os
import onlyhere
print("onlyhere", onlyhere.VERSION, "POISONED" if getattr(onlyhere, "INJECTED", False) else "pristine")
"""


def run(podman: Podman, image: str, job: Job, name: str, cache: Path, wheels: Path) -> Run:
    backend = Backend(podman, image, settings_env=INDEX)
    return backend.run(job, name, binds=[(cache, RUNNER_CACHE_DIR), (wheels, "/wheels:ro")])


def folders(tmp_path: Path) -> tuple[Path, Path]:
    cache, wheels = tmp_path / "cache", tmp_path / "wheels"
    cache.mkdir()
    build_wheel(wheels, FakeWheel("onlyhere", "0.3"))
    return cache, wheels


def record(job: Job) -> dict[str, object]:
    document = json.loads((job.logs / "run.json").read_text())
    assert isinstance(document, dict)
    return document


def test_a_package_shipped_with_the_code_is_built_from_roots_copy_as_the_source_builder(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    cache, wheels = folders(tmp_path)
    files: dict[str, str | bytes] = {
        "main.py": "import onlyhere, slowpkg\nprint('imported', slowpkg.VALUE, onlyhere.VERSION)\n",
        "requirements.txt": "-r more/pins.txt\n./slowpkg\n",
        "more/pins.txt": "onlyhere==0.3\n",
        "slowpkg/pyproject.toml": PYPROJECT,
        "slowpkg/slow_backend.py": BACKEND,
        "slowpkg/PKG-INFO": METADATA,
    }
    first = Job(tmp_path / "first")
    first.stage(files)
    done = run(podman, oci_image, first, f"local-package-{engine_session.token}", cache, wheels)
    assert done.code == 0, done.text
    assert f"imported {VALUE} 0.3" in done.lines
    overlay = record(first)["overlay"]
    assert isinstance(overlay, dict)
    key = overlay["key"]
    assert overlay["sources"]["source_builds"] == ["slowpkg"]
    assert f"runner: building overlay {key} as scu-src (8006:8006), which may build packages from source, " in (
        done.text
    )
    lock = (first.logs / "requirements.lock.txt").read_text()
    assert "\n/inputs/slowpkg\n" in lock and "request." not in lock  # the job's path, not root's copy
    assert not [path for path in (cache / "uv").rglob("*") if "slowpkg" in path.name]  # built with a private cache
    assert list((cache / "building").iterdir()) == []  # root's copy of the job's files is gone

    second = Job(tmp_path / "second")
    second.stage(files)
    again = run(podman, oci_image, second, f"local-package-again-{engine_session.token}", cache, wheels)
    assert again.code == 0, again.text
    assert record(second)["overlay"]["reused"] is True  # type: ignore[index]  # the same files, the same key


def test_a_link_to_a_file_the_job_may_not_read_is_refused_as_the_job_sees_it(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    cache, wheels = folders(tmp_path)
    job = Job(tmp_path / "job")
    job.stage({"main.py": IMPORTS, "requirements.txt": "onlyhere==0.3\n-r secret.txt\n"})
    os.symlink("/etc/shadow", job.inputs / "secret.txt")  # root's, mode 640 in the image
    os.lchown(job.inputs / "secret.txt", BACKEND_UID, BACKEND_UID)
    done = run(podman, oci_image, job, f"link-{engine_session.token}", cache, wheels)
    assert done.code == 2, done.text
    assert done.at_level("error") == [
        "error: runner: secret.txt: cannot read it (Permission denied) (fix the -r/-c path)"
    ], done.text
    assert "root:" not in done.text and not (cache / "overlays").exists()  # nothing reached root


def forge(overlay: Path) -> None:
    """What a job user who owned the cache could do: edit a module, then re-record the seal consistently."""
    for path in [overlay, *overlay.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    (module,) = overlay.rglob("onlyhere/__init__.py")
    module.chmod(0o644)
    module.write_text("VERSION = '0.3'\nINJECTED = True\n")
    marker = overlay / "overlay.json"
    data = json.loads(marker.read_text())
    for stale in overlay.rglob("__pycache__"):
        seal.remove(stale)
    (overlay / seal.MANIFEST).unlink()  # the seal writes a new file, never over one (nor through a link)
    data["manifest_sha256"] = seal.record(overlay, frozenset({"overlay.json"}))
    marker.chmod(0o644)
    marker.write_text(json.dumps(data))
    for path in [overlay, *overlay.rglob("*")]:
        os.lchown(path, BACKEND_UID, BACKEND_UID)


def test_a_cache_a_job_user_could_write_is_never_trusted(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    cache, wheels = folders(tmp_path)
    first = Job(tmp_path / "first")
    first.stage({"main.py": IMPORTS, "requirements.txt": "onlyhere==0.3\n"})
    assert run(podman, oci_image, first, f"trusted-{engine_session.token}", cache, wheels).code == 0
    key = str(record(first)["overlay"]["key"])  # type: ignore[index]
    overlay = cache / "overlays" / key

    # A forged overlay whose seal is consistent, owned by the job's user: its owner alone condemns it.
    forge(overlay)
    second = Job(tmp_path / "second")
    second.stage({"main.py": IMPORTS, "requirements.txt": "onlyhere==0.3\n"})
    done = run(podman, oci_image, second, f"forged-{engine_session.token}", cache, wheels)
    assert done.code == 0, done.text
    assert "onlyhere 0.3 pristine" in done.lines
    (warning,) = done.at_level("warning")
    assert f"(overlays/{key} belongs to UID {BACKEND_UID}, not to the cache's owner 0)" in warning
    assert overlay.stat().st_uid == 0

    # An older image's cache: every folder the job's user's. Emptied, then made root's again.
    forge(overlay)
    for path in [cache, *cache.rglob("*")]:
        os.lchown(path, BACKEND_UID, BACKEND_UID)
    third = Job(tmp_path / "third")
    third.stage({"main.py": IMPORTS, "requirements.txt": "onlyhere==0.3\n"})
    done = run(podman, oci_image, third, f"older-image-{engine_session.token}", cache, wheels)
    assert done.code == 0, done.text
    assert "onlyhere 0.3 pristine" in done.lines
    warnings = done.at_level("warning")
    assert any(f"{RUNNER_CACHE_DIR}/overlays was not made by the image's supervisor" in line for line in warnings)
    assert any(f"{RUNNER_CACHE_DIR}/uv was not made by the image's supervisor" in line for line in warnings)
    assert record(third)["overlay"]["reused"] is False  # type: ignore[index]
    assert (cache.stat().st_uid, (cache / "overlays").stat().st_uid, (cache / "uv").stat().st_uid) == (0, 0, 8005)
    assert not [path for path in cache.iterdir() if path.name.startswith(".discarded")]


def test_mounts_of_a_builders_uid_cannot_get_an_overlay(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    cache, wheels = folders(tmp_path)
    job = Job(tmp_path / "job", (8005, 8005))
    job.stage({"main.py": IMPORTS, "requirements.txt": "onlyhere==0.3\n"})
    done = run(podman, oci_image, job, f"builder-uid-{engine_session.token}", cache, wheels)
    assert done.code == 3, done.text
    (error,) = done.at_level("error")
    assert error.startswith("error: runner: the job's user scu (8005:8005) and the builder scu-build (8005:8005)")
    assert error.endswith(
        "(the image keeps UIDs 8005 and 8006 for building overlays: give the job's folders another owner)"
    )
    assert (job.outputs / "output_1.zip").is_file()  # a failed setup still leaves every output


def test_sigterm_in_the_middle_of_a_build_stops_it_and_leaves_nothing(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    """`docker stop` (SIGTERM) while scu-src builds: root stops the build and removes its folders, the job ends 143."""
    cache, wheels = folders(tmp_path)
    write_sdist(wheels)
    signals = tmp_path / "signals"
    signals.mkdir()
    signals.chmod(0o777)
    job = Job(tmp_path / "job")
    job.stage({"main.py": "import slowpkg\n", "requirements.txt": "--no-binary slowpkg\nslowpkg==1.0\n"})
    backend = Backend(podman, oci_image, settings_env={**INDEX, MARKER_VARIABLE: "/signals/started"})
    name = f"stopped-{engine_session.token}"
    binds = [(cache, RUNNER_CACHE_DIR), (wheels, "/wheels:ro"), (signals, "/signals")]
    backend.create(job, name, binds=binds)
    podman.run("start", name)
    deadline = time.monotonic() + 120
    while not (signals / "started").exists():
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.2)
    assert list((cache / "building").iterdir())  # the staging folder, its work folder, root's copy of the files
    podman.run("stop", "--time", "30", name)
    done = backend.finish(name)
    assert done.code == 143, done.text
    assert done.at_level("error")[-1] == "error: runner: interrupted (SIGTERM) before the script ran", done.text
    assert list((cache / "building").iterdir()) == [] and list((cache / "overlays").iterdir()) == []
    assert (job.outputs / "output_1.zip").is_file()
    assert "Traceback" not in done.text


JOB_UV = "#!/bin/sh\necho 'the job user's uv ran as' \"$(id -u)\" >&2\nexit 99\n"
IMAGE_PATH = (
    "/opt/conda/envs/flavor/bin:/home/scu/service.cli:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)


def test_root_runs_only_its_own_uv(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    """A uv the job's user owns never builds: named by RUNNER_UV it is refused; first on PATH, the flavor's wins."""
    cache, wheels = folders(tmp_path)
    files: dict[str, str | bytes] = {"main.py": IMPORTS, "requirements.txt": "onlyhere==0.3\n", "bin/uv": JOB_UV}
    binds = [(cache, RUNNER_CACHE_DIR), (wheels, "/wheels:ro")]

    named = Job(tmp_path / "named")
    named.stage(files)
    (named.inputs / "bin" / "uv").chmod(0o755)
    backend = Backend(podman, oci_image, settings_env={**INDEX, "RUNNER_UV": "/inputs/bin/uv"})
    done = backend.run(named, f"job-uv-named-{engine_session.token}", binds=binds)
    assert done.code == 3, done.text
    (error,) = done.at_level("error")
    assert error.startswith(f"error: runner: uv at /inputs/bin/uv belongs to UID {BACKEND_UID} (mode 755); ")
    assert "the image builds overlays only with root's uv" in error
    assert "ran as" not in done.text

    first_on_path = Job(tmp_path / "on-path")
    first_on_path.stage(files)
    (first_on_path.inputs / "bin" / "uv").chmod(0o755)
    backend = Backend(podman, oci_image, settings_env={**INDEX, "PATH": f"/inputs/bin:{IMAGE_PATH}"})
    done = backend.run(first_on_path, f"job-uv-on-path-{engine_session.token}", binds=binds)
    assert done.code == 0, done.text
    assert "onlyhere 0.3 pristine" in done.lines and "ran as" not in done.text
