"""common/entrypoint.sh run for real: as root, in a throwaway mount namespace, against folders of another UID.

Each test gets private copies of /etc, /home and /var/log bind-mounted over the real ones inside
`unshare --mount`, so useradd/usermod/chown act on copies and the machine is left untouched.
The mounts are folders under /mnt (also private); the entrypoint is the repository's file.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.images.conftest import REPO

ENTRYPOINT = REPO / "common" / "entrypoint.sh"
LIBRARY = REPO / "common" / "entrypoint_lib.sh"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the command prints once it runs, to show who it runs as and what it may write.
REPORT = (
    'echo "pid=$$ uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER";'
    " touch /mnt/output/result $HOME/written /mnt/cache/written && echo wrote"
)


def _namespaces_work() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


needs_namespace = pytest.mark.skipif(not _namespaces_work(), reason="needs root and unshare --mount")


@dataclass
class Sandbox:
    root: Path

    @property
    def mnt(self) -> Path:
        return self.root / "mnt"

    def folder(self, name: str, owner: tuple[int, int] | None) -> Path:
        path = self.mnt / name
        path.mkdir(exist_ok=True)
        if owner is not None:
            os.chown(path, *owner)
        return path

    def script(self, setup: str = "") -> Path:
        """Inside the namespace: private /etc, /home, /var/log, /mnt; the image's user scu; then the entrypoint."""
        text = f"""set -eu
mount --bind {self.root}/etc /etc
mount --bind {self.root}/home /home
mount --bind {self.root}/varlog /var/log
mount --bind {self.mnt} /mnt
groupadd --gid 8004 scu
useradd --uid 8004 --gid 8004 --no-log-init --create-home --home-dir /home/scu --shell /bin/sh scu
{setup}
exec sh {ENTRYPOINT} "$@"
"""
        path = self.root / "namespace.sh"
        path.write_text(text)
        return path

    def popen(self, command: list[str], setup: str = "") -> subprocess.Popen[str]:
        env = {
            "PATH": PATH,
            "INPUT_FOLDER": "/mnt/input",
            "OUTPUT_FOLDER": "/mnt/output",
            "RUNNER_CACHE_DIR": "/mnt/cache",
            "SC_USER_NAME": "scu",
            "SC_USER_HOME": "/home/scu",
        }
        # unshare without --fork execs in place: the returned pid is the entrypoint's, then the command's.
        argv = ["unshare", "--mount", "--propagation", "private", "sh", str(self.script(setup)), *command]
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, command: list[str], setup: str = "") -> tuple[int, str, str, int]:
        process = self.popen(command, setup)
        out, err = process.communicate(timeout=60)
        return process.returncode, out, err, process.pid


@pytest.fixture()
def sandbox(tmp_path: Path) -> Sandbox:
    root = tmp_path / "sandbox"
    root.mkdir()
    subprocess.run(["cp", "-a", "/etc", str(root / "etc")], check=True)
    for name in ("home", "varlog", "mnt"):
        (root / name).mkdir()
    (root / "mnt").chmod(0o755)
    return Sandbox(root)


def parse(out: str) -> dict[str, str]:
    """The REPORT line as fields (`groups` holds a space-separated list)."""
    line = next(line for line in out.splitlines() if line.startswith("pid="))
    match = re.fullmatch(r"pid=(\d+) uid=(\d+) gid=(\d+) groups=([\d ]+) home=(\S+) user=(\S+)", line)
    assert match, line
    return dict(zip(("pid", "uid", "gid", "groups", "home", "user"), match.groups(), strict=True))


@needs_namespace
def test_adopts_the_owner_of_the_mounts_and_execs(sandbox: Sandbox) -> None:
    sandbox.folder("input", (1234, 1234))
    sandbox.folder("output", (1234, 1234))
    passwd_before = Path("/etc/passwd").read_bytes()
    code, out, err, pid = sandbox.run(["sh", "-c", REPORT])
    assert code == 0, err
    seen = parse(out)
    assert (seen["uid"], seen["gid"], seen["groups"]) == ("1234", "1234", "1234")
    assert seen["home"] == "/home/scu" and seen["user"] == "scu"
    assert seen["pid"] == str(pid), "the command must replace the entrypoint (exec), not run as its child"
    assert "wrote" in out
    assert (sandbox.mnt / "output" / "result").stat().st_uid == 1234
    for place in (sandbox.root / "home" / "scu", sandbox.mnt / "cache"):
        assert (place.stat().st_uid, place.stat().st_gid) == (1234, 1234)
    assert Path("/etc/passwd").read_bytes() == passwd_before
    assert "scu:x:1234:1234:" in (sandbox.root / "etc" / "passwd").read_text()


@needs_namespace
def test_uid_of_another_image_user_and_an_existing_group(sandbox: Sandbox) -> None:
    sandbox.folder("input", (1000, 100))
    sandbox.folder("output", (1000, 100))
    setup = "getent passwd 1000 >/dev/null || useradd --uid 1000 --no-log-init --no-create-home other\n"
    setup += "getent group 100 >/dev/null || groupadd --gid 100 users"
    code, out, err, _ = sandbox.run(["sh", "-c", REPORT], setup)
    assert code == 0, err
    seen = parse(out)
    assert (seen["uid"], seen["gid"]) == ("1000", "100")
    assert seen["user"] == "scu"


@needs_namespace
def test_root_owned_mounts_put_scu_in_group_root(sandbox: Sandbox) -> None:
    for name in ("input", "output"):
        sandbox.folder(name, (0, 0)).chmod(0o775)
    code, out, err, _ = sandbox.run(["sh", "-c", REPORT])
    assert code == 0, err
    seen = parse(out)
    assert seen["uid"] == "8004"
    assert "0" in seen["groups"].split()
    assert "adding scu to group root" in err


@needs_namespace
def test_refuses_mounts_of_different_owners(sandbox: Sandbox) -> None:
    sandbox.folder("input", (1234, 1234))
    sandbox.folder("output", (4321, 4321))
    code, out, err, _ = sandbox.run(["sh", "-c", "echo SHOULD-NOT-RUN"])
    assert code == 1
    assert "SHOULD-NOT-RUN" not in out
    assert "/mnt/input is owned by 1234:1234 but /mnt/output by 4321:4321" in err


@needs_namespace
def test_refuses_a_missing_mount(sandbox: Sandbox) -> None:
    sandbox.folder("input", (1234, 1234))
    code, out, err, _ = sandbox.run(["sh", "-c", "echo SHOULD-NOT-RUN"])
    assert code == 1
    assert "SHOULD-NOT-RUN" not in out
    assert "/mnt/output is not mounted" in err


@needs_namespace
def test_sigterm_reaches_the_command(sandbox: Sandbox) -> None:
    sandbox.folder("input", (1234, 1234))
    sandbox.folder("output", (1234, 1234))
    command = 'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.1; done'
    process = sandbox.popen(["sh", "-c", command])
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "got-term" in out


@needs_namespace
def test_chown_does_not_follow_symlinks_in_the_cache(sandbox: Sandbox) -> None:
    sandbox.folder("input", (1234, 1234))
    sandbox.folder("output", (1234, 1234))
    cache = sandbox.folder("cache", None)
    secret = sandbox.root / "root-only"
    secret.write_text("root's\n")
    (cache / "link").symlink_to(secret)
    code, _, err, _ = sandbox.run(["true"])
    assert code == 0, err
    assert secret.stat().st_uid == 0
    assert cache.stat().st_uid == 1234


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to start as another user")
def test_started_as_non_root_runs_the_command_as_it_is(tmp_path: Path) -> None:
    env = {"PATH": PATH, "INPUT_FOLDER": str(tmp_path / "absent"), "OUTPUT_FOLDER": str(tmp_path / "absent")}
    argv = ["setpriv", "--reuid=4321", "--regid=4321", "--clear-groups", "sh", str(ENTRYPOINT), "id", "-u"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4321"
    assert "not root: running the command as it is" in done.stderr


def test_mount_owner_decision_of_the_library(tmp_path: Path) -> None:
    """The same functions the entrypoint sources, called directly (runs anywhere, no root needed)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    script = f'. {LIBRARY}; ep_mount_owner; printf "rc=%s\\n" "$?"'
    env = {"PATH": PATH, "INPUT_FOLDER": str(tmp_path / "in"), "OUTPUT_FOLDER": str(tmp_path / "out")}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert done.stdout.splitlines() == [f"{os.getuid()}:{os.getgid()}", "rc=0"]
    missing = subprocess.run(
        ["sh", "-c", script], env={**env, "OUTPUT_FOLDER": str(tmp_path / "nope")}, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "is not mounted" in missing.stderr
