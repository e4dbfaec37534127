"""The common layer: what common/Dockerfile adds to the base, identical for every flavor.

The users appended to the base's /etc/passwd and /etc/group (and /etc/shadow, /etc/gshadow
when the base has them): `scu` (UID/GID 8004, home /home/scu), who runs the job, and the
overlay builders `scu-build` (8005) and `scu-src` (8006), no home, no login (runner/README.md,
"In the image"); the mount points owned by scu, the runner cache owned by root (the runner's
supervisor keeps it), the entrypoint and the runner package. Nothing here depends on the
flavor, so both flavors carry the same blob.

uv is not here: as in the Docker path, it comes from the flavor's lock (the runner feature
of pixi.toml), sha256-checked like every package, never from the build machine.
`cli.images.locked_tools` refuses a lock without it before any build work, for both engines.

The constants are kept in step with common/Dockerfile; a test compares them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cli.errors import UserError
from cli.oci.base import BaseImage
from cli.oci.tarball import Entry, directory, file_bytes, file_copy, tree_entries

USER = "scu"
UID = 8004
GID = 8004
HOME = "/home/scu"
INPUT_FOLDER = "/inputs"
OUTPUT_FOLDER = "/outputs"
RUNNER_HOME = "/opt/runner"
RUNNER_CACHE_DIR = "/var/cache/osparc-runner"
CONDA_ROOT = "/opt/conda"
ENTRYPOINT_DIR = "/usr/local/lib/osparc-runner"
ENTRYPOINT_FILES = ("entrypoint.sh", "entrypoint_lib.sh")
ENTRYPOINT = ["/bin/sh", f"{ENTRYPOINT_DIR}/entrypoint.sh"]
CMD = ["run"]
WORKING_DIR = HOME
LOGIN_SHELL = "/bin/sh"
NO_LOGIN_SHELL = "/usr/sbin/nologin"
NO_HOME = "/nonexistent"
# The overlay builders (runner/identities.py defaults), as common/Dockerfile's loop creates them.
BUILDERS = (("scu-build", 8005), ("scu-src", 8006))
# ENV of common/Dockerfile, in its order.
ENV = (
    ("SC_USER_NAME", USER),
    ("SC_USER_ID", str(UID)),
    ("SC_USER_HOME", HOME),
    ("INPUT_FOLDER", INPUT_FOLDER),
    ("OUTPUT_FOLDER", OUTPUT_FOLDER),
    ("RUNNER_HOME", RUNNER_HOME),
    ("RUNNER_CACHE_DIR", RUNNER_CACHE_DIR),
    ("MAMBA_ROOT_PREFIX", CONDA_ROOT),
    ("LANG", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
)
DEFAULT_ACCOUNTS = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
}


@dataclass(frozen=True)
class CommonSources:
    """Where the common layer's files come from: the workspace (the docker build context)."""

    runner: Path
    entrypoint_dir: Path

    @classmethod
    def find(cls, root: Path) -> CommonSources:
        runner = root / "runner"
        if not (runner / "__init__.py").is_file():
            raise UserError("no runner package here", path=runner, fix="build from the runner repository's root")
        entrypoint_dir = root / "common"
        for name in ENTRYPOINT_FILES:
            if not (entrypoint_dir / name).is_file():
                raise UserError("missing", path=entrypoint_dir / name, fix="restore it from the runner repository")
        return cls(runner, entrypoint_dir)


def account_line_name(line: str) -> str:
    return line.split(":", 1)[0]


def with_account(text: str, line: str) -> bytes:
    """`text` without any earlier entry of the same name, plus `line` at the end."""
    name = account_line_name(line)
    kept = [existing for existing in text.splitlines() if existing and account_line_name(existing) != name]
    return ("\n".join([*kept, line]) + "\n").encode("utf-8")


def account_lines(name: str, uid: int, home: str, shell: str, days: int) -> dict[str, str]:
    """What useradd and groupadd write for a user whose group has its name and number."""
    return {
        "etc/passwd": f"{name}:x:{uid}:{uid}::{home}:{shell}",
        "etc/group": f"{name}:x:{uid}:",
        "etc/shadow": f"{name}:!:{days}:0:99999:7:::",
        "etc/gshadow": f"{name}:!::",
    }


def account_entries(base: BaseImage, epoch: int) -> list[Entry]:
    """/etc/passwd and /etc/group (always) and /etc/shadow, /etc/gshadow (if the base has them) with the users added."""
    days = epoch // 86400
    users = [account_lines(USER, UID, HOME, LOGIN_SHELL, days)]
    users += [account_lines(name, uid, NO_HOME, NO_LOGIN_SHELL, days) for name, uid in BUILDERS]
    entries = []
    for path in users[0]:
        known = base.files.get(path)
        if known is None and path not in DEFAULT_ACCOUNTS:
            continue
        if known is None:
            text = DEFAULT_ACCOUNTS[path]
        else:
            try:
                text = known.data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise UserError(f"/{path} of the base is not UTF-8 text", fix="use another base") from error
        for lines in users:
            text = with_account(text, lines[path]).decode("utf-8")
        data = text.encode("utf-8")
        if known is None:
            entries.append(file_bytes(path, data))
        else:
            entries.append(file_bytes(path, data, mode=known.mode, uid=known.uid, gid=known.gid))
    return entries


def _skip_cache(path: Path) -> bool:
    return path.name == "__pycache__" or path.suffix == ".pyc"


def common_entries(base: BaseImage, sources: CommonSources, epoch: int) -> list[Entry]:
    entries = account_entries(base, epoch)
    owned = {"uid": UID, "gid": GID}
    entries += [
        directory(HOME.lstrip("/"), **owned),
        directory(INPUT_FOLDER.lstrip("/"), **owned),
        directory(OUTPUT_FOLDER.lstrip("/"), **owned),
        directory(RUNNER_CACHE_DIR.lstrip("/")),  # root's, 0755: the runner's supervisor keeps it
        directory(f"{CONDA_ROOT.lstrip('/')}/envs"),
    ]
    for name in ENTRYPOINT_FILES:
        entries.append(file_copy(f"{ENTRYPOINT_DIR.lstrip('/')}/{name}", sources.entrypoint_dir / name))
    entries += tree_entries(sources.runner, f"{RUNNER_HOME.lstrip('/')}/runner", skip=_skip_cache)
    return entries
