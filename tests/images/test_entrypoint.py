"""common/entrypoint.sh run for real: as root, in a throwaway mount namespace, against folders of another UID.

(The same entrypoint in a real container engine, started as oSPARC's backend starts it: tests/engine.)

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
    " touch /mnt/outputs/result $HOME/written && echo wrote"
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

    def popen(self, command: list[str], setup: str = "", extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
        env = {
            "PATH": PATH,
            "INPUT_FOLDER": "/mnt/inputs",
            "OUTPUT_FOLDER": "/mnt/outputs",
            "RUNNER_CACHE_DIR": "/mnt/cache",
            "SC_USER_NAME": "scu",
            "SC_USER_HOME": "/home/scu",
            **(extra or {}),
        }
        # unshare without --fork execs in place: the returned pid is the entrypoint's, then the command's.
        argv = ["unshare", "--mount", "--propagation", "private", "sh", str(self.script(setup)), *command]
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(
        self, command: list[str], setup: str = "", extra: dict[str, str] | None = None
    ) -> tuple[int, str, str, int]:
        process = self.popen(command, setup, extra)
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


def error_lines(err: str) -> list[str]:
    """The lines oSPARC's backend would classify as errors."""
    return [line for line in err.splitlines() if line.lower().startswith(("error", "err"))]


@needs_namespace
def test_adopts_the_owner_of_the_mounts_and_execs(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1234, 1234))
    sandbox.folder("outputs", (1234, 1234))
    passwd_before = Path("/etc/passwd").read_bytes()
    code, out, err, pid = sandbox.run(["sh", "-c", REPORT])
    assert code == 0, err
    seen = parse(out)
    assert (seen["uid"], seen["gid"], seen["groups"]) == ("1234", "1234", "1234")
    assert seen["home"] == "/home/scu" and seen["user"] == "scu"
    assert seen["pid"] == str(pid), "the command must replace the entrypoint (exec), not run as its child"
    assert "wrote" in out
    assert (sandbox.mnt / "outputs" / "result").stat().st_uid == 1234
    home = sandbox.root / "home" / "scu"
    assert (home.stat().st_uid, home.stat().st_gid) == (1234, 1234)
    assert not (sandbox.mnt / "cache").exists()  # the overlay cache is the runner's supervisor's, left alone
    assert Path("/etc/passwd").read_bytes() == passwd_before
    assert "scu:x:1234:1234:" in (sandbox.root / "etc" / "passwd").read_text()
    assert error_lines(err) == []


@needs_namespace
def test_mounts_of_the_backends_user_8004(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (8004, 8004))
    sandbox.folder("outputs", (8004, 8004))
    code, out, err, _ = sandbox.run(["sh", "-c", REPORT])
    assert code == 0, err
    assert (parse(out)["uid"], parse(out)["gid"]) == ("8004", "8004")
    assert "takes UID" not in err  # nothing to change


@needs_namespace
def test_uid_of_another_image_user_and_an_existing_group(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1000, 100))
    sandbox.folder("outputs", (1000, 100))
    setup = "getent passwd 1000 >/dev/null || useradd --uid 1000 --no-log-init --no-create-home other\n"
    setup += "getent group 100 >/dev/null || groupadd --gid 100 users"
    code, out, err, _ = sandbox.run(["sh", "-c", REPORT], setup)
    assert code == 0, err
    seen = parse(out)
    assert (seen["uid"], seen["gid"]) == ("1000", "100")
    assert seen["user"] == "scu"


@needs_namespace
def test_root_owned_group_writable_mounts_put_scu_in_group_root(sandbox: Sandbox) -> None:
    for name in ("inputs", "outputs"):
        sandbox.folder(name, (0, 0)).chmod(0o775)
    code, out, err, _ = sandbox.run(["sh", "-c", REPORT])
    assert code == 0, err
    seen = parse(out)
    assert seen["uid"] == "8004"
    assert "0" in seen["groups"].split()
    assert "adding scu to group root" in err


@needs_namespace
def test_a_root_owned_0755_output_fails_at_start_with_one_line(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (0, 0)).chmod(0o755)
    sandbox.folder("outputs", (0, 0)).chmod(0o755)
    code, out, err, _ = sandbox.run(["sh", "-c", "echo SHOULD-NOT-RUN"])
    assert code == 2
    assert "SHOULD-NOT-RUN" not in out
    (line,) = error_lines(err)
    assert line.startswith("error: /mnt/outputs: owned by 0:0, mode 755, so the job's user 8004:8004 cannot write")
    assert "chown 8004:8004 <folder>" in line
    assert "Permission denied" not in err


@needs_namespace
def test_inputs_of_another_owner_are_fine_when_readable(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (0, 0)).chmod(0o755)  # e.g. root's files, mounted read-only
    sandbox.folder("outputs", (1234, 1234))
    code, out, err, _ = sandbox.run(["sh", "-c", REPORT])
    assert code == 0, err
    assert parse(out)["uid"] == "1234"


@needs_namespace
def test_unreadable_inputs_fail_with_one_line(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (4321, 4321)).chmod(0o700)
    sandbox.folder("outputs", (1234, 1234))
    code, out, err, _ = sandbox.run(["sh", "-c", "echo SHOULD-NOT-RUN"])
    assert code == 2
    assert "SHOULD-NOT-RUN" not in out
    (line,) = error_lines(err)
    assert line.startswith("error: /mnt/inputs: owned by 4321:4321, mode 700, so the job's user 1234:1234 cannot read")


@needs_namespace
def test_a_missing_log_folder_is_made_for_the_job(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1234, 1234))
    sandbox.folder("outputs", (1234, 1234))
    code, _, err, _ = sandbox.run(["sh", "-c", 'touch "$LOG_FOLDER/run.log"'], extra={"LOG_FOLDER": "/mnt/logs"})
    assert code == 0, err
    assert (sandbox.mnt / "logs" / "run.log").stat().st_uid == 1234


@needs_namespace
def test_an_unwritable_log_folder_fails_with_one_line(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1234, 1234))
    sandbox.folder("outputs", (1234, 1234))
    sandbox.folder("logs", (0, 0)).chmod(0o755)
    code, _, err, _ = sandbox.run(["true"], extra={"LOG_FOLDER": "/mnt/logs"})
    assert code == 2
    (line,) = error_lines(err)
    assert line.startswith("error: /mnt/logs: owned by 0:0, mode 755")


@needs_namespace
def test_refuses_a_missing_output_folder(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1234, 1234))
    code, out, err, _ = sandbox.run(["sh", "-c", "echo SHOULD-NOT-RUN"])
    assert code == 2
    assert "SHOULD-NOT-RUN" not in out
    assert error_lines(err) == [
        "error: /mnt/outputs: no such folder (mount the job's folder there, e.g. docker run -v <folder>:/mnt/outputs)"
    ]


@needs_namespace
def test_a_missing_tool_is_named_in_one_line(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1234, 1234))
    sandbox.folder("outputs", (1234, 1234))
    code, out, err, _ = sandbox.run(["sh", "-c", "echo SHOULD-NOT-RUN"], setup="export PATH=/nowhere:/usr/bin:/bin")
    assert code == 70
    assert "SHOULD-NOT-RUN" not in out
    (line,) = error_lines(err)
    assert line.startswith("error: the base image lacks usermod groupmod groupadd, which the entrypoint needs")


@needs_namespace
def test_sigterm_reaches_the_command(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1234, 1234))
    sandbox.folder("outputs", (1234, 1234))
    command = 'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.1; done'
    process = sandbox.popen(["sh", "-c", command])
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "got-term" in out


@needs_namespace
def test_the_overlay_cache_is_left_to_the_runner(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1234, 1234))
    sandbox.folder("outputs", (1234, 1234))
    cache = sandbox.folder("cache", None)
    (cache / "overlays").mkdir()
    code, _, err, _ = sandbox.run(["true"])
    assert code == 0, err
    assert (cache.stat().st_uid, (cache / "overlays").stat().st_uid) == (0, 0)  # never handed to the job's user
    assert "/mnt/cache" not in err


@needs_namespace
def test_chown_of_the_home_does_not_follow_symlinks(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1234, 1234))
    sandbox.folder("outputs", (1234, 1234))
    secret = sandbox.root / "root-only"
    secret.write_text("root's\n")
    setup = f"ln -s {secret} /home/scu/link"
    code, _, err, _ = sandbox.run(["true"], setup)
    assert code == 0, err
    assert secret.stat().st_uid == 0
    assert (sandbox.root / "home" / "scu").stat().st_uid == 1234


# The image's `run` (the service's run script) as the sandbox stands it in: who runs it, where, told what.
RUN_STANDIN = 'printf "%s\\n" "uid=$(id -u) job=${RUNNER_JOB_USER:-} cwd=$(pwd) pid=$$ args=$*"'


@needs_namespace
def test_the_runner_is_handed_over_as_root_with_the_job_user_named(sandbox: Sandbox) -> None:
    sandbox.folder("inputs", (1234, 1234))
    sandbox.folder("outputs", (1234, 1234))
    stand_in = sandbox.mnt / "bin" / "run"
    stand_in.parent.mkdir()
    stand_in.write_text(f"#!/bin/sh\n{RUN_STANDIN}\n")
    stand_in.chmod(0o755)
    code, out, err, pid = sandbox.run(["run", "--timeout", "5"], setup="export PATH=/mnt/bin:$PATH")
    assert code == 0, err
    # Root, so that its supervisor can build overlays as the builders; the job runs as scu (runner/supervisor.py).
    assert out.strip() == f"uid=0 job=scu cwd=/ pid={pid} args=--timeout 5"
    assert "running run --timeout 5 as root's supervisor; the job runs as scu (1234:1234" in err
    assert "scu:x:1234:1234:" in (sandbox.root / "etc" / "passwd").read_text()  # adopted before the handover


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to start as another user")
def test_started_as_non_root_runs_the_command_as_it_is(tmp_path: Path) -> None:
    env = {"PATH": PATH, "INPUT_FOLDER": str(tmp_path / "absent"), "OUTPUT_FOLDER": str(tmp_path / "absent")}
    argv = ["setpriv", "--reuid=4321", "--regid=4321", "--clear-groups", "sh", str(ENTRYPOINT), "id", "-u"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4321"
    assert "not root: running the command as it is" in done.stderr


def test_folder_checks_of_the_library(tmp_path: Path) -> None:
    """The same functions the entrypoint sources, called directly (runs anywhere, no root needed)."""
    (tmp_path / "out").mkdir()
    script = '. "$0"; ep_require_folder "$1"; ep_owner "$1"'
    done = subprocess.run(["sh", "-c", script, LIBRARY, tmp_path / "out"], env={"PATH": PATH}, capture_output=True)
    assert done.stdout.decode().splitlines() == [f"{os.getuid()}:{os.getgid()}"]
    missing = subprocess.run(["sh", "-c", script, LIBRARY, tmp_path / "nope"], env={"PATH": PATH}, capture_output=True)
    assert missing.returncode == 2
    assert missing.stderr.decode().startswith(f"error: {tmp_path / 'nope'}: no such folder")
