"""One overlay cache volume shared by jobs of different users, as a node's volume would be (issue 14).

Containers of the fixture flavor, started as the backend starts them, share one podman
volume at RUNNER_CACHE_DIR; their /inputs /outputs /logs belong to different UIDs. Job A
(UID 8004) gets an overlay with `onlyhere` and attacks it the ways a script can: through
`onlyhere.__file__`, a `.pth` file, a replacement, a mode change, uv's cache, the cache's
folders (listing overlays/, locks/ and building/ too). Every attempt must end in
"permission denied" (or "operation not permitted" for chmod). Job B (UID 1234, another
user) runs on the same overlay: pristine, reused, seal checked. Then a root process outside
edits the overlay on the volume (what no job can do, as from a restored backup): job C says
which file changed, rebuilds, and runs pristine. What the volume holds is checked on the
way: who owns the overlays, uv's cache and the staging folders, and with which modes.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.backend import BACKEND_UID, Backend, Job, Run
from tests.engine.conftest import EngineSession
from tests.engine.jobs import read_zip_member
from tests.engine.podman import Podman
from tests.runner.wheels import FakeWheel, build_wheel

RUNNER_CACHE_DIR = "/var/cache/osparc-runner"  # common/Dockerfile
BUILDER, SOURCE_BUILDER = 8005, 8006  # scu-build, scu-src: common/Dockerfile, cli/oci/common.py
OTHER_OWNER = (1234, 4321)

ATTACK = """\
import errno, json, os
import onlyhere

site = os.path.dirname(os.path.dirname(onlyhere.__file__))
overlay = site.split("/venv/")[0]
cache = os.environ["RUNNER_CACHE_DIR"]
results = {}


def attempt(name, action):
    try:
        action()
        results[name] = "done"
    except OSError as error:
        results[name] = f"{errno.errorcode[error.errno]}: {error.strerror}"


def append():
    with open(onlyhere.__file__, "a") as handle:
        handle.write("\\nINJECTED = True\\nprint('INJECTED BY AN EARLIER JOB')\\n")


def replace():
    with open(onlyhere.__file__ + ".new", "w") as handle:
        handle.write("INJECTED = True\\n")
    os.replace(onlyhere.__file__ + ".new", onlyhere.__file__)


attempt("edit the module", append)
attempt("add a .pth file", lambda: open(os.path.join(site, "zz_evil.pth"), "w").close())
attempt("replace the module", replace)
attempt("make the module writable", lambda: os.chmod(onlyhere.__file__, 0o666))
attempt("rename the overlay", lambda: os.rename(overlay, overlay + ".old"))
attempt("list uv's cache", lambda: os.listdir(os.path.join(cache, "uv")))
attempt("plant an overlay", lambda: os.mkdir(os.path.join(cache, "overlays", "planted")))
attempt("take a build lock", lambda: open(os.path.join(cache, "locks", "planted.build"), "w").close())
attempt("list the staging folders", lambda: os.listdir(os.path.join(cache, "building")))
attempt("list the overlays", lambda: os.listdir(os.path.join(cache, "overlays")))
attempt("list the locks", lambda: os.listdir(os.path.join(cache, "locks")))
with open(os.path.join(os.environ["OUTPUT_1"], "attack.json"), "w") as handle:
    json.dump({"uid": os.getuid(), "module": onlyhere.__file__, "results": results}, handle)
print("job A tried", len(results), "ways in")
"""

VICTIM = """\
import os
import onlyhere
with open(os.path.join(os.environ["OUTPUT_1"], "seen.txt"), "w") as handle:
    handle.write(f"{os.getuid()} {onlyhere.__file__}\\n")
print("onlyhere", onlyhere.VERSION, "POISONED" if getattr(onlyhere, "INJECTED", False) else "pristine")
"""

DENIED = "EACCES: Permission denied"
EXPECTED = {
    "edit the module": DENIED,
    "add a .pth file": DENIED,
    "replace the module": DENIED,
    "make the module writable": "EPERM: Operation not permitted",
    "rename the overlay": DENIED,
    "list uv's cache": DENIED,
    "plant an overlay": DENIED,
    "take a build lock": DENIED,
    "list the staging folders": DENIED,
    "list the overlays": DENIED,  # the names of other users' overlays (keys of what they asked for)
    "list the locks": DENIED,
}


@pytest.fixture()
def volume(podman: Podman, engine_session: EngineSession, engine: str) -> Iterator[tuple[str, Path]]:
    """A podman volume (name, and where its files are on this host), removed after the test."""
    name = f"overlay-cache-{engine_session.token}-{engine}"
    podman.run("volume", "create", name)
    mountpoint = Path(podman.run("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip())
    try:
        yield name, mountpoint
    finally:
        podman.run("volume", "rm", "--force", name, check=False)


@pytest.fixture()
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    build_wheel(folder, FakeWheel("onlyhere", "0.3"))
    return folder


def run_job(podman: Podman, image: str, job: Job, name: str, volume: str, wheels: Path, script: str) -> Run:
    job.stage({"main.py": script, "requirements.txt": "onlyhere==0.3\n"})
    backend = Backend(podman, image, settings_env={"UV_FIND_LINKS": "/wheels", "UV_OFFLINE": "1"})
    run = backend.run(job, name, binds=[(volume, RUNNER_CACHE_DIR), (wheels, "/wheels:ro")])
    assert run.code == 0, run.text
    assert run.at_level("error") == [], run.text
    return run


def overlay_of(job: Job) -> dict[str, object]:
    record = json.loads((job.logs / "run.json").read_text())
    overlay = record["overlay"]
    assert isinstance(overlay, dict)
    return overlay


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_job_cannot_poison_the_shared_cache_for_another_users_job(
    podman: Podman,
    engine: str,
    image: str,
    engine_session: EngineSession,
    volume: tuple[str, Path],
    wheels: Path,
    tmp_path: Path,
) -> None:
    name, cache = volume
    token = f"{engine_session.token}-{engine}"

    # Job A, UID 8004: its overlay is built (as scu-build) and sealed; then its script attacks it.
    job_a = Job(tmp_path / "a", (BACKEND_UID, BACKEND_UID))
    run_a = run_job(podman, image, job_a, f"attacker-{token}", name, wheels, ATTACK)
    attack = json.loads(read_zip_member(job_a.outputs / "output_1.zip", "attack.json"))
    assert attack["uid"] == BACKEND_UID
    assert attack["results"] == EXPECTED, run_a.text  # the job user gets "permission denied" on the sealed overlay
    key = str(overlay_of(job_a)["key"])
    assert any(line.startswith(f"runner: overlay {key} built and sealed") for line in run_a.lines), run_a.text
    assert any(line.startswith(f"runner: building overlay {key} as scu-build (8005:8005)") for line in run_a.lines)

    # What the volume holds: root's cache, root's sealed overlay, uv's cache the builder's, no staging left.
    overlay = cache / "overlays" / key
    module = Path(str(attack["module"]))
    relative = module.relative_to(Path(RUNNER_CACHE_DIR) / "overlays" / key)
    assert (cache.stat().st_uid, mode(cache)) == (0, 0o755)
    for folder, owner, folder_mode in (("overlays", 0, 0o711), ("locks", 0, 0o700), ("building", 0, 0o711),
                                       ("uv", BUILDER, 0o700)):  # fmt: skip
        assert ((cache / folder).stat().st_uid, mode(cache / folder)) == (owner, folder_mode), folder
    assert list((cache / "building").iterdir()) == []
    everything = [overlay, *overlay.rglob("*")]
    assert {path.lstat().st_uid for path in everything} == {0}
    assert not [path for path in everything if not path.is_symlink() and mode(path) & 0o7222]
    assert (mode(overlay), mode(overlay / relative)) == (0o555, 0o444)
    uv_files = [path for path in (cache / "uv").rglob("*") if not path.is_symlink()]
    assert uv_files and {path.lstat().st_uid for path in uv_files} == {BUILDER}  # uv ran as scu-build only

    # Job B, another user: the same overlay, reused after its seal was checked, pristine.
    job_b = Job(tmp_path / "b", OTHER_OWNER)
    run_b = run_job(podman, image, job_b, f"victim-{token}", name, wheels, VICTIM)
    assert "onlyhere 0.3 pristine" in run_b.lines and "INJECTED" not in run_b.text
    assert read_zip_member(job_b.outputs / "output_1.zip", "seen.txt").decode() == f"{OTHER_OWNER[0]} {module}\n"
    assert overlay_of(job_b)["reused"] is True and overlay_of(job_b)["key"] == key
    assert f"runner: overlay {key} reused (1 packages, seal checked)" in run_b.lines

    # A root process outside the containers edits the overlay (a job cannot): the next reuse finds it, names the
    # file, and builds the overlay again.
    with (overlay / relative).open("a") as handle:
        handle.write("\nINJECTED = True\nprint('INJECTED BY A ROOT PROCESS')\n")
    job_c = Job(tmp_path / "c", OTHER_OWNER)
    run_c = run_job(podman, image, job_c, f"after-tamper-{token}", name, wheels, VICTIM)
    (warning,) = run_c.at_level("warning")
    assert warning == (
        f"warning: runner: overlay {key} was changed after it was sealed ({relative} changed): "
        "discarding it and building it again"
    ), run_c.text
    assert "onlyhere 0.3 pristine" in run_c.lines and "INJECTED" not in run_c.text
    described = overlay_of(job_c)
    assert (described["reused"], described["rebuilt_because"]) == (False, f"{relative} changed")
    assert "INJECTED" not in (overlay / relative).read_text()
    assert list((cache / "building").iterdir()) == []
    assert os.listdir(cache / "overlays") == [key]
