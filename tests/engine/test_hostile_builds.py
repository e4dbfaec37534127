"""A job whose own build, files or script attack root's cache in the image (the second security review).

- A source build (as scu-src) plants things where root used to write: a link named
  `files.sha256` in its staging folder (root wrote the seal through it: a `.pth` landed in
  another overlay, or in scu-build's uv cache), a file name holding a newline (which broke the
  seal's one-entry-a-line format), a `.pth` file in the venv that no RECORD lists, a link in
  the venv. Root now seals its own copy of the venv, checked against the RECORDs, and never
  writes into a folder the builder could write: every one of these refuses the overlay, and
  nothing lands anywhere else.
- Two jobs ship a find-links wheel of the same name and size but other content: each gets its
  own overlay (the key was the file's name and size).
- A job killed (SIGKILL, oSPARC's cancel) in the middle of a build leaves staging folders and
  root's copy of its files: the next request sweeps them.
- The job's script can run uv: its UV_CACHE_DIR is not scu-build's cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.backend import Backend, Job
from tests.engine.conftest import EngineSession
from tests.engine.podman import Podman
from tests.engine.slow_sdist import MARKER_VARIABLE, write_sdist
from tests.runner.wheels import FakeWheel, build_wheel
from tests.support.build_backend import backend_module, pyproject

RUNNER_CACHE_DIR = "/var/cache/osparc-runner"  # common/Dockerfile
INDEX = {"UV_FIND_LINKS": "/wheels", "UV_OFFLINE": "1"}
OTHER_OWNER = (1234, 4321)

PYPROJECT = pyproject("evilpkg", "1.0", "evil_backend")

# The build backend of `evilpkg`: before it builds, it does what attack.txt says to the staging folder it finds
# through its TMPDIR (`building/<key>.<random>.work/tmp`), then builds a correct wheel.
BACKEND = backend_module(
    "evilpkg",
    "1.0",
    repr({"evilpkg/__init__.py": "X = 1\n"}),
    before_build="_attack()",
    helpers=r"""
HERE = pathlib.Path(__file__).parent
INJECTION = "import sys; print('INJECTED THROUGH ROOT BY ANOTHER JOB', file=sys.stderr)\n"


def _attack():
    stage = pathlib.Path(os.environ["TMPDIR"].split(".work/")[0])
    how, _, target = (HERE / "attack.txt").read_text().strip().partition(" ")
    site = next(stage.glob("venv/lib/python*/site-packages"))
    if how == "link-the-seal":  # root wrote files.sha256 through this link
        os.symlink(target, stage / "files.sha256")
    elif how == "newline-name":  # a name that read as its own line of files.sha256
        (stage / ("a\n" + INJECTION)).write_text("x")
    elif how == "pth-in-venv":  # a .pth that runs in every later job on this overlay
        (site / "zz_evil.pth").write_text(INJECTION)
    elif how == "link-in-venv":
        os.symlink(target, site / "zz_evil.pth")
""",
)

VICTIM = """\
import subprocess, sys
import onlyhere
print("onlyhere", onlyhere.VERSION, "POISONED" if getattr(onlyhere, "INJECTED", False) else "pristine")
child = subprocess.run([sys.executable, "-c", "pass"], capture_output=True, text=True)  # a new interpreter: runs .pth
print("child said:", child.stderr.strip() or "nothing")
"""

# Attack -> how the attacker's job ends (the one error line's reason).
ATTACKS = {
    "link-the-seal": "error: runner: the build left files.sha256 in the overlay's staging folder",
    "newline-name": 'error: runner: the build left "a\\nimport sys; print(',
    "pth-in-venv": "error: runner: the overlay's files do not match their RECORD: "
    "lib/python3.11/site-packages/zz_evil.pth is listed in no RECORD",
    "link-in-venv": "error: runner: the build made a link in the venv: lib/python3.11/site-packages/zz_evil.pth -> ",
}


def overlay_of(job: Job) -> dict[str, object]:
    described = json.loads((job.logs / "run.json").read_text())["overlay"]
    assert isinstance(described, dict)
    return described


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_source_build_cannot_make_root_write_anywhere(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path, attack: str
) -> None:
    cache, wheels = tmp_path / "cache", tmp_path / "wheels"
    cache.mkdir()
    build_wheel(wheels, FakeWheel("onlyhere", "0.3"))
    binds = [(cache, RUNNER_CACHE_DIR), (wheels, "/wheels:ro")]
    backend = Backend(podman, oci_image, settings_env=INDEX)
    token = f"{engine_session.token}-{attack}"

    # Another user's overlay, and uv's shared cache, exist: the targets.
    first = Job(tmp_path / "first", OTHER_OWNER)
    first.stage({"main.py": VICTIM, "requirements.txt": "onlyhere==0.3\n"})
    done = backend.run(first, f"hostile-first-{token}", binds=binds)
    assert done.code == 0 and "child said: nothing" in done.lines, done.text
    key = str(overlay_of(first)["key"])
    (site,) = (cache / "overlays" / key).glob("venv/lib/python*/site-packages")
    target = f"{RUNNER_CACHE_DIR}/{site.relative_to(cache)}/zz_evil.pth"
    if attack == "link-the-seal":  # scu-build's uv cache as well as the overlay: one run each would double the time
        (entry,) = [p for p in (cache / "uv").rglob("0.3-py3-none-any") if p.is_symlink()]
        target = f"{RUNNER_CACHE_DIR}/{entry.relative_to(cache)}/zz_evil.pth"

    attacker = Job(tmp_path / "attacker")
    attacker.stage({"main.py": "import evilpkg\n", "requirements.txt": "./evilpkg\n",
                    "evilpkg/pyproject.toml": PYPROJECT, "evilpkg/evil_backend.py": BACKEND,
                    "evilpkg/attack.txt": f"{attack} {target}\n"})  # fmt: skip
    refused = backend.run(attacker, f"hostile-attacker-{token}", binds=binds)
    assert refused.code == 3, refused.text
    (error,) = refused.at_level("error")
    assert error.startswith(ATTACKS[attack]), refused.text
    assert "INJECTED" not in refused.text.replace(error, "")
    assert not list(cache.rglob("zz_evil.pth")), "root wrote where the build pointed it"
    assert not [path for path in (cache / "overlays").iterdir() if path.name != key]  # nothing sealed for evilpkg
    assert list((cache / "building").iterdir()) == []

    later = Job(tmp_path / "later", OTHER_OWNER)
    later.stage({"main.py": VICTIM, "requirements.txt": "onlyhere==0.3\n"})
    done = backend.run(later, f"hostile-later-{token}", binds=binds)
    assert done.code == 0, done.text
    assert "onlyhere 0.3 pristine" in done.lines and "child said: nothing" in done.lines, done.text
    assert overlay_of(later)["reused"] is True and "INJECTED" not in done.text


def test_a_find_links_wheel_of_the_same_name_and_size_gets_its_own_overlay(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    """Job A ships a doctored `onlyhere` as large as the real one; job B, shipping the real one, must not get A's."""
    cache = tmp_path / "cache"
    cache.mkdir()
    backend = Backend(podman, oci_image, settings_env={"UV_OFFLINE": "1"})
    runs = []
    for name, owner, flag in (("a", (8004, 8004), "1"), ("b", OTHER_OWNER, "0")):
        job = Job(tmp_path / name, owner)
        job.stage({"main.py": VICTIM, "requirements.txt": "--no-index\n-f ./wheels\nonlyhere==0.3\n"})
        module = f"VERSION = '0.3'\nINJECTED = {flag == '1'!s:>5}\n"  # 'True' or 'False', padded: the same size
        build_wheel(job.inputs / "wheels", FakeWheel("onlyhere", "0.3", files={"onlyhere/__init__.py": module}))
        job.give_to_owner()
        done = backend.run(job, f"find-links-{name}-{engine_session.token}", binds=[(cache, RUNNER_CACHE_DIR)])
        runs.append((job, done))
    (job_a, run_a), (job_b, run_b) = runs
    sizes = {(job.inputs / "wheels" / "onlyhere-0.3-py3-none-any.whl").stat().st_size for job, _ in runs}
    assert len(sizes) == 1, "the two wheels must have the same size for this test to mean anything"
    assert "onlyhere 0.3 POISONED" in run_a.lines, run_a.text
    assert "onlyhere 0.3 pristine" in run_b.lines, run_b.text
    assert overlay_of(job_a)["key"] != overlay_of(job_b)["key"]
    assert overlay_of(job_b)["reused"] is False


def test_what_a_killed_build_leaves_is_swept_by_the_next_request(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    """oSPARC cancels with SIGKILL: root gets no chance to clean up; the next job's request does it."""
    cache, wheels, signals = tmp_path / "cache", tmp_path / "wheels", tmp_path / "signals"
    cache.mkdir()
    signals.mkdir()
    signals.chmod(0o777)
    build_wheel(wheels, FakeWheel("onlyhere", "0.3"))
    write_sdist(wheels)
    binds = [(cache, RUNNER_CACHE_DIR), (wheels, "/wheels:ro"), (signals, "/signals")]
    killed = Job(tmp_path / "killed")
    killed.stage({"main.py": "import slowpkg\n", "requirements.txt": "--no-binary slowpkg\nslowpkg==1.0\n"})
    slow = Backend(podman, oci_image, settings_env={**INDEX, MARKER_VARIABLE: "/signals/started"})
    slow.start_and_kill_when(killed, f"killed-{engine_session.token}", signals / "started", binds=binds)
    left = sorted(path.name for path in (cache / "building").iterdir())
    assert any(name.startswith("request.") for name in left) and any(name.endswith(".work") for name in left), left

    job = Job(tmp_path / "next")
    job.stage({"main.py": VICTIM, "requirements.txt": "onlyhere==0.3\n"})
    done = Backend(podman, oci_image, settings_env=INDEX).run(job, f"after-kill-{engine_session.token}", binds=binds)
    assert done.code == 0 and "onlyhere 0.3 pristine" in done.lines, done.text
    assert list((cache / "building").iterdir()) == []


UV_SCRIPT = """\
import os, subprocess, sys
uv = os.path.join(os.path.dirname(sys.executable), "uv")
done = subprocess.run([uv, "pip", "install", "--python", sys.executable, "--no-index", "--find-links", "/wheels",
                       "--target", "/tmp/t", "onlyhere==0.3"], capture_output=True, text=True)
print("UV_CACHE_DIR", os.environ.get("UV_CACHE_DIR", "unset"))
print("uv exited", done.returncode, done.stderr.strip().splitlines()[-1:] if done.returncode else "")
"""


def test_the_jobs_script_can_run_uv(
    podman: Podman, oci_image: str, engine_session: EngineSession, tmp_path: Path
) -> None:
    """The image's ENV pointed UV_CACHE_DIR at scu-build's cache (0700): every uv call of a script failed."""
    cache, wheels = tmp_path / "cache", tmp_path / "wheels"
    cache.mkdir()
    build_wheel(wheels, FakeWheel("onlyhere", "0.3"))
    job = Job(tmp_path / "job")
    job.stage({"main.py": UV_SCRIPT})
    done = Backend(podman, oci_image, settings_env={"UV_OFFLINE": "1"}).run(
        job, f"job-uv-{engine_session.token}", binds=[(cache, RUNNER_CACHE_DIR), (wheels, "/wheels:ro")]
    )
    assert done.code == 0, done.text
    assert "uv exited 0 " in done.lines, done.text
    assert not any(line.startswith(f"UV_CACHE_DIR {RUNNER_CACHE_DIR}") for line in done.lines), done.text
