"""A job cannot poison the overlay cache for the next one (issue 14, local runs): sealed overlays, no shared inodes,
every file checked before reuse, wheels only unless a job allows sources."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import seal
from tests.runner.conftest import REPO, BaseEnv, Job, RunJob, UvRecorder, error_line, runner_command
from tests.runner.wheels import FakeWheel, build_wheel
from tests.support.build_backend import backend_module, pyproject

SITE = "venv/lib/python{}.{}/site-packages".format(*sys.version_info[:2])

VICTIM_SCRIPT = """\
import onlyhere
print("onlyhere", onlyhere.VERSION, "POISONED" if getattr(onlyhere, "INJECTED", False) else "pristine")
"""

# How job A tampers with the overlay it was given. Each undoes the seal first, as a job running as the
# overlay's owner can (locally, or as root): only the check before reuse stands in its way.
ATTACKS = {
    "edit the module": """\
        import os, onlyhere
        path = onlyhere.__file__
        os.chmod(os.path.dirname(path), 0o755)
        os.chmod(path, 0o644)
        with open(path, "a") as handle:
            handle.write("\\nINJECTED = True\\nprint('INJECTED BY AN EARLIER JOB')\\n")
        print("edited", path)
        """,
    "add a .pth file": """\
        import os, onlyhere
        site = os.path.dirname(os.path.dirname(onlyhere.__file__))
        os.chmod(site, 0o755)
        with open(os.path.join(site, "zz_evil.pth"), "w") as handle:
            handle.write("import onlyhere; onlyhere.INJECTED = True\\n")
        print("added a .pth")
        """,
    "replace the module": """\
        import os, onlyhere
        path = onlyhere.__file__
        os.chmod(os.path.dirname(path), 0o755)
        with open(path + ".new", "w") as handle:
            handle.write("VERSION = '0.3'\\nINJECTED = True\\n")
        os.replace(path + ".new", path)
        print("replaced", path)
        """,
}
EXPECTED_PROBLEM = {
    "edit the module": f"{SITE}/onlyhere/__init__.py changed",
    "add a .pth file": f"{SITE}/zz_evil.pth was added",
    "replace the module": f"{SITE}/onlyhere/__init__.py changed",
}


@pytest.fixture()
def private_uv_cache(tmp_path: Path) -> Path:
    return tmp_path / "uv-cache"


def overlay_folder(job: Job) -> Path:
    return Path(job.summary()["overlay"]["path"])  # type: ignore[index]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_job_cannot_poison_the_next_one(
    job: Job, run_job: RunJob, uv_recorder: UvRecorder, private_uv_cache: Path, attack: str
) -> None:
    env = {"UV_CACHE_DIR": str(private_uv_cache)}
    job.write("requirements.txt", "onlyhere==0.3\n")
    job.write("main.py", ATTACKS[attack])
    first = run_job(env=env)  # job A
    assert first.returncode == 0, first.stderr
    builds = uv_recorder.count("pip sync")

    job.write("main.py", VICTIM_SCRIPT)
    second = run_job(env=env)  # job B: same requirements, same RUNNER_CACHE_DIR
    assert second.returncode == 0, second.stderr
    assert "onlyhere 0.3 pristine" in second.stdout, second.stdout
    assert "INJECTED" not in second.stdout
    warnings = [line for line in second.stderr.splitlines() if "changed after it was sealed" in line]
    assert len(warnings) == 1, second.stderr
    assert f"({EXPECTED_PROBLEM[attack]})" in warnings[0] and "building it again" in warnings[0]
    assert uv_recorder.count("pip sync") == builds + 1, "the tampered overlay must be rebuilt"
    overlay = job.summary()["overlay"]
    assert overlay["reused"] is False and overlay["rebuilt_because"] == EXPECTED_PROBLEM[attack]  # type: ignore[index]

    third = run_job(env=env)  # the rebuilt overlay is sealed and reused as such
    assert third.returncode == 0 and "pristine" in third.stdout
    assert job.summary()["overlay"]["reused"] is True  # type: ignore[index]
    assert uv_recorder.count("pip sync") == builds + 1


def test_an_overlay_shares_no_inode_with_uvs_cache(job: Job, run_job: RunJob, private_uv_cache: Path) -> None:
    job.write("requirements.txt", "onlyhere==0.3\nuserpkg\n")
    job.write("main.py", VICTIM_SCRIPT)
    result = run_job(env={"UV_CACHE_DIR": str(private_uv_cache)})
    assert result.returncode == 0, result.stderr
    overlay = overlay_folder(job)
    overlay_files = [p for p in overlay.rglob("*") if p.is_file() and not p.is_symlink()]
    cache_inodes = {p.stat().st_ino for p in private_uv_cache.rglob("*") if p.is_file() and not p.is_symlink()}
    cached_modules = [p for p in private_uv_cache.rglob("onlyhere/__init__.py")]
    assert cached_modules, "uv's cache should hold the unpacked wheel"
    assert [p for p in overlay_files if p.stat().st_nlink != 1] == []
    assert {p.stat().st_ino for p in overlay_files}.isdisjoint(cache_inodes)


# A wheel whose .pth file runs at every start of a Python that sees it: it says whether that was the script or not.
PTH_WHEEL = FakeWheel(
    "pthpkg",
    "1.0",
    files={
        "pthpkg/__init__.py": "VERSION = '1.0'\n",
        "pthpkg_hook.pth": "import os; os.environ.get('PTH_MARKER') and open(os.environ['PTH_MARKER'], 'a').write("
        "'script\\n' if 'OUTPUT_1' in os.environ else 'not the script\\n')\n",
    },
)


def test_a_wheels_only_build_runs_no_code_of_the_wheels(
    job: Job, run_job: RunJob, wheelhouse: Path, tmp_path: Path
) -> None:
    """In the image the builder owns uv's shared cache: installing and byte-compiling must run nothing it installed.

    uv's own `--compile-bytecode` starts the overlay's Python with its site, which runs every `.pth`
    file just installed; the overlay is compiled without the site instead (`python -S`).
    """
    build_wheel(tmp_path / "pth-wheels", PTH_WHEEL)
    marker = tmp_path / "pth-ran"
    job.write("requirements.txt", "pthpkg==1.0\n")
    job.write("main.py", "import pthpkg\nprint('pthpkg', pthpkg.VERSION)\n")
    result = run_job(env={"UV_FIND_LINKS": f"{wheelhouse},{tmp_path / 'pth-wheels'}", "PTH_MARKER": str(marker)})
    assert result.returncode == 0, result.stderr
    assert "pthpkg 1.0" in result.stdout
    # The hook ran when the script started (a venv's site reads it twice), never during the build.
    assert set(marker.read_text().splitlines()) == {"script"}
    manifest = (overlay_folder(job) / seal.MANIFEST).read_text()
    assert "/pthpkg/__pycache__/__init__.cpython-" in manifest  # byte-compiled all the same


def test_a_finished_overlay_is_read_only(job: Job, run_job: RunJob) -> None:
    job.write("requirements.txt", "onlyhere==0.3\n")
    job.write("main.py", VICTIM_SCRIPT)
    assert run_job().returncode == 0
    overlay = overlay_folder(job)
    writable = [p for p in (overlay, *overlay.rglob("*")) if not p.is_symlink() and p.stat().st_mode & 0o222]
    assert writable == []
    manifest = (overlay / seal.MANIFEST).read_text().splitlines()
    assert any(line.endswith(f"{SITE}/onlyhere/__init__.py") for line in manifest)
    assert any("__pycache__/__init__.cpython-" in line for line in manifest), "byte code is compiled before sealing"


@pytest.fixture()
def shared_cache() -> Iterator[Path]:
    """An overlay cache another user can reach (pytest's own temporary folders are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="runner-shared-cache-"))
    folder.chmod(0o755)
    yield folder
    seal.remove(folder)


def as_other_user(command: list[str]) -> list[str]:
    """Run `command` as an unprivileged user: 'nobody' when we are root (root ignores modes), else ourselves."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop root")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--", *command]


def test_another_user_gets_permission_denied_on_a_sealed_overlay(job: Job, run_job: RunJob, shared_cache: Path) -> None:
    job.write("requirements.txt", "onlyhere==0.3\n")
    job.write("main.py", VICTIM_SCRIPT)
    assert run_job(env={"RUNNER_CACHE_DIR": str(shared_cache)}).returncode == 0
    module = overlay_folder(job) / SITE / "onlyhere" / "__init__.py"
    readable = subprocess.run(as_other_user(["cat", str(module)]), capture_output=True, text=True, check=False)
    assert readable.returncode == 0 and "VERSION" in readable.stdout, readable  # the user reaches it, and may read it
    for shell in ('echo "INJECTED = True" >> "$1"', 'echo "import os" > "$(dirname "$1")/../zz_evil.pth"'):
        attempt = subprocess.run(
            as_other_user(["sh", "-c", shell, "sh", str(module)]), capture_output=True, text=True, check=False
        )
        assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, attempt
    assert "INJECTED" not in module.read_text()


def test_the_check_names_a_changed_added_or_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "overlay"
    (folder / "pkg" / "__pycache__").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("VERSION = 1\n")
    (folder / "pkg" / "__pycache__" / "__init__.cpython-312.pyc").write_bytes(b"\x00" * 32)
    (folder / "link").symlink_to("pkg/__init__.py")
    (folder / "overlay.json").write_text("{}")
    digest = seal.record(folder, frozenset({"overlay.json"}))
    seal.make_read_only(folder)
    skip = frozenset({"overlay.json"})
    assert seal.check(folder, digest, skip) is None
    seal.remove(folder / "nothing")  # a missing folder is fine
    for path in (folder, folder / "pkg"):
        path.chmod(0o755)
    (folder / "pkg" / "extra.py").write_text("")
    assert seal.check(folder, digest, skip) == "pkg/extra.py was added"
    (folder / "pkg" / "extra.py").unlink()
    (folder / "link").unlink()
    (folder / "link").symlink_to("/etc/passwd")
    assert seal.check(folder, digest, skip) == "link changed"
    (folder / "link").unlink()
    assert seal.check(folder, digest, skip) == "link is missing"
    (folder / "link").symlink_to("pkg/__init__.py")
    if os.geteuid() != 0:  # root reads whatever the modes say
        (folder / "pkg").chmod(0)
        assert seal.check(folder, digest, skip) == "pkg cannot be read (Permission denied)"
        (folder / "pkg").chmod(0o755)
    (folder / "a\nb").write_text("")  # a name that would read as two lines of files.sha256
    assert seal.check(folder, digest, skip) == "'a\\nb' was added"
    (folder / "a\nb").unlink()
    (folder / seal.MANIFEST).chmod(0o644)
    (folder / seal.MANIFEST).write_text("")
    assert seal.check(folder, digest, skip) == f"{seal.MANIFEST} changed"
    (folder / seal.MANIFEST).unlink()
    (folder / seal.MANIFEST).symlink_to(tmp_path / "elsewhere")  # never read (nor written) through a link
    (tmp_path / "elsewhere").write_text("")
    assert seal.check(folder, digest, skip) == f"{seal.MANIFEST} is missing"
    with pytest.raises(FileExistsError):
        seal.record(folder, skip)
    (folder / seal.MANIFEST).unlink()
    (folder / "a\nb").write_text("")
    with pytest.raises(ValueError, match=r"a name files\.sha256 cannot record on one line"):
        seal.record(folder, skip)
    seal.remove(folder)
    assert not folder.exists()


def test_prune_removes_sealed_overlays(
    job: Job, run_job: RunJob, runner_env: dict[str, str], base_env: BaseEnv
) -> None:
    job.write("requirements.txt", "onlyhere==0.3\n")
    job.write("main.py", VICTIM_SCRIPT)
    assert run_job().returncode == 0
    overlay = overlay_folder(job)
    pruned = subprocess.run(
        runner_command(base_env.python, "cache", "prune", "--all"), cwd=REPO, env=runner_env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert "removed" in pruned.stdout and not overlay.exists()


# --- builds from source ----------------------------------------------------------------------------------------


def write_sdist(folder: Path, name: str, version: str) -> Path:
    """An sdist that uv builds offline with its bundled uv_build backend."""
    stem = f"{name}-{version}"
    files = {
        "PKG-INFO": f"Metadata-Version: 2.3\nName: {name}\nVersion: {version}\n",
        "pyproject.toml": textwrap.dedent(
            f"""\
            [project]
            name = "{name}"
            version = "{version}"
            [build-system]
            requires = ["uv_build>=0.7,<1"]
            build-backend = "uv_build"
            """
        ),
        f"src/{name}/__init__.py": f"VERSION = {version!r}\nBUILT_FROM_SOURCE = True\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for relative, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{stem}/{relative}")
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture()
def sdist_links(tmp_path: Path, wheelhouse: Path) -> str:
    sdists = tmp_path / "sdists"
    write_sdist(sdists, "fromsource", "1.0")
    return f"{wheelhouse},{sdists}"


def test_an_index_sdist_is_refused_by_default(
    job: Job, run_job: RunJob, sdist_links: str, uv_recorder: UvRecorder
) -> None:
    job.write("requirements.txt", "fromsource\n")
    job.write("main.py", "import fromsource\n")
    result = run_job(env={"UV_FIND_LINKS": sdist_links})
    assert result.returncode == 3
    line = error_line(result)
    assert "fromsource" in line and "wheels only" in line
    assert "--no-binary NAME" in line and "--only-binary :none:" in line
    assert uv_recorder.count("pip sync") == 0


@pytest.mark.parametrize(
    ("allow", "recorded"), [("--no-binary fromsource", ["fromsource"]), ("--only-binary :none:", "any")]
)
def test_a_job_may_allow_a_build_from_source(
    job: Job, run_job: RunJob, sdist_links: str, allow: str, recorded: object
) -> None:
    job.write("requirements.txt", f"{allow}\nfromsource\n")
    job.write("main.py", "import fromsource\nprint('built from source', fromsource.BUILT_FROM_SOURCE)\n")
    result = run_job(env={"UV_FIND_LINKS": sdist_links})
    assert result.returncode == 0, result.stderr
    assert "built from source True" in result.stdout
    assert job.summary()["overlay"]["sources"]["source_builds"] == recorded  # type: ignore[index]


def test_a_shipped_source_folder_without_a_name_is_one_line(job: Job, run_job: RunJob) -> None:
    (job.code / "tool").mkdir()
    (job.code / "tool" / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    job.write("requirements.txt", "./tool\n")
    job.write("main.py", "print('never')\n")
    result = run_job()
    assert result.returncode == 2
    line = error_line(result)
    assert "requirements.txt line 1: cannot tell the name of the package in tool without building it" in line
    assert "NAME @ ./path" in line


def test_wheels_only_is_recorded(job: Job, run_job: RunJob) -> None:
    job.write("requirements.txt", "onlyhere\n")
    job.write("main.py", VICTIM_SCRIPT)
    assert run_job().returncode == 0
    sources = job.summary()["overlay"]["sources"]  # type: ignore[index]
    assert sources["source_builds"] == []
    assert sources["index"] == {"url": "https://pypi.org/simple", "from": "uv's default"}


def test_a_large_overlay_is_hashed_by_several_threads_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "overlay"
    for n in range(40):
        (folder / f"m{n % 4}").mkdir(parents=True, exist_ok=True)
        (folder / f"m{n % 4}" / f"f{n}.py").write_text(f"V = {n}\n" * (n + 1))
    serial = seal.record(folder, frozenset())
    monkeypatch.setattr(seal, "PARALLEL_FROM_BYTES", 0)
    assert seal.check(folder, serial, frozenset()) is None
    (folder / "m3" / "f39.py").write_text("tampered\n")
    assert seal.check(folder, serial, frozenset()) == "m3/f39.py changed"


def doctored_onlyhere(folder: Path, injected: bool) -> Path:
    """`onlyhere` 0.3 with INJECTED set or not: both wheels have the same name and the same size."""
    module = f"VERSION = '0.3'\nINJECTED = {injected!s:>5}\n"
    return build_wheel(folder, FakeWheel("onlyhere", "0.3", files={"onlyhere/__init__.py": module}))


@pytest.mark.parametrize("layout", ["find-links", "index folder", "file: URL find-links"])
def test_a_local_wheel_of_the_same_name_and_size_gets_its_own_overlay(
    job: Job, run_job: RunJob, tmp_path: Path, layout: str
) -> None:
    """The key hashed the content of no local package source but shipped packages (find-links: name and size only)."""
    from tests.runner.wheels import write_simple_index

    wheels = job.code / "wheels"
    sources = {
        "find-links": "--no-index\n-f ./wheels\n",
        "index folder": "-i ./simple\n",
        "file: URL find-links": f"--no-index\n-f {wheels.as_uri()}\n",
    }
    job.write("requirements.txt", f"{sources[layout]}onlyhere==0.3\n")
    job.write("main.py", VICTIM_SCRIPT)
    keys, sizes = [], set()
    for injected in (True, False):  # job A ships a doctored copy; job B, the same code folder, the real one
        shutil.rmtree(wheels, ignore_errors=True)
        shutil.rmtree(job.code / "simple", ignore_errors=True)
        sizes.add(doctored_onlyhere(wheels, injected).stat().st_size)
        if layout == "index folder":
            write_simple_index(wheels, job.code / "simple")
        done = run_job(env={"UV_FIND_LINKS": ""})
        assert done.returncode == 0, done.stderr
        assert ("POISONED" if injected else "pristine") in done.stdout, done.stdout
        keys.append(job.summary()["overlay"]["key"])  # type: ignore[index]
    assert len(sizes) == 1 and keys[0] != keys[1]


def test_a_hidden_file_of_a_shipped_package_is_part_of_the_key(job: Job, run_job: RunJob) -> None:
    """A build backend may read any file of its folder (hidden ones, __pycache__): the key hashed none of them."""
    job.write("requirements.txt", "./pkg\n")
    job.write("main.py", "import hiddenpkg\nprint(hiddenpkg.VALUE)\n")
    job.write("pkg/pyproject.toml", HIDDEN_PYPROJECT)
    job.write("pkg/hidden_backend.py", HIDDEN_BACKEND)
    keys = []
    for value in ("first", "second"):
        job.write("pkg/.value", value)
        done = run_job()
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == value, done.stderr  # the new build, not uv's earlier one of the same folder
        keys.append(job.summary()["overlay"]["key"])  # type: ignore[index]
    assert keys[0] != keys[1]


def test_an_edited_module_of_a_shipped_package_is_built_again(job: Job, run_job: RunJob) -> None:
    """uv rebuilds a folder it built before only when its pyproject.toml/setup.py/setup.cfg changed (its default
    cache-keys): a local build must not hand the scientist the old code of a package they edited."""
    job.write("requirements.txt", "./pkg\n")
    job.write("main.py", "import freshpkg\nprint(freshpkg.VALUE)\n")
    job.write("pkg/pyproject.toml", FRESH_PYPROJECT)
    job.write("pkg/fresh_backend.py", FRESH_BACKEND)
    code = job.write("pkg/freshpkg/__init__.py", "VALUE = 'first'\n")
    untouched = [job.code / "pkg" / name for name in ("pyproject.toml", "fresh_backend.py")]
    before = [path.stat().st_mtime_ns for path in untouched]
    first = run_job()
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "first", first.stderr
    written = code.stat().st_mtime
    code.write_text("VALUE = 'second'\n")
    os.utime(code, (written + 2, written + 2))  # an edit a little later, as an editor leaves it
    second = run_job()
    assert second.returncode == 0, second.stderr
    assert [path.stat().st_mtime_ns for path in untouched] == before
    assert job.summary()["overlay"]["reused"] is False  # type: ignore[index]
    assert second.stdout.strip() == "second", second.stderr
    # Built from a copy of its own, removed after the build: what the overlay records names the job's folder.
    shipped = (job.code / "pkg").as_uri()
    (package,) = job.summary()["overlay"]["packages"]  # type: ignore[index]
    assert package["url"] == shipped
    (direct_url,) = overlay_folder(job).glob(f"{SITE}/freshpkg-1.0.dist-info/direct_url.json")
    assert json.loads(direct_url.read_text())["url"] == shipped
    assert not list((overlay_folder(job).parent.parent / "building").iterdir())


HIDDEN_PYPROJECT = pyproject("hiddenpkg", "1.0", "hidden_backend")

# Its module's value comes from a hidden file of the package's folder, read at build time.
HIDDEN_BACKEND = backend_module(
    "hiddenpkg",
    "1.0",
    '{"hiddenpkg.py": f"VALUE = {value!r}\\n"}',
    before_build='value = pathlib.Path(".value").read_text().strip()',
)

FRESH_PYPROJECT = pyproject("freshpkg", "1.0", "fresh_backend")

# Its module is the package's own freshpkg/__init__.py, as any build backend copies it.
FRESH_BACKEND = backend_module(
    "freshpkg", "1.0", '{"freshpkg/__init__.py": pathlib.Path("freshpkg/__init__.py").read_text()}'
)


def test_a_file_uvs_cache_holds_that_its_record_does_not_list_refuses_the_overlay(
    job: Job, run_job: RunJob, private_uv_cache: Path
) -> None:
    """Locally a job can write your uv cache: an added .pth reaches no overlay sealed later (RECORD check)."""
    env = {"UV_CACHE_DIR": str(private_uv_cache)}
    job.write("requirements.txt", "onlyhere==0.3\n")
    job.write("main.py", VICTIM_SCRIPT)
    assert run_job(env=env).returncode == 0
    (unpacked,) = {path.parent for path in private_uv_cache.rglob("onlyhere/__init__.py")}
    (unpacked.parent / "zz_evil.pth").write_text("import sys; print('INJECTED THROUGH UV CACHE', file=sys.stderr)\n")
    job.write("requirements.txt", "onlyhere>=0.3\n")  # another overlay from the same cache entry
    refused = run_job(env=env)
    assert refused.returncode == 3, refused.stderr
    assert error_line(refused).startswith(
        f"error: runner: the overlay's files do not match their RECORD: {SITE[5:]}/zz_evil.pth is listed in no RECORD"
    ), refused.stderr
    assert "INJECTED" not in refused.stdout + refused.stderr
