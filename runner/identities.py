"""The image's three identities besides root, and the two things root does with them: switch, and clean up after.

In the image (runner/README.md, "In the image: root, builder and job user") the runner starts
as root, the supervisor, which never runs uv, a build or user code itself:
- the **job user** (`RUNNER_JOB_USER`, set by the entrypoint to `scu`, which it made match
  the mounts' owner) runs the job: the runner's work on the job's files, then the script;
- the **builder** (`RUNNER_BUILD_USER`, default `scu-build`, UID 8005 in the image) runs uv
  for overlays of wheels only and owns uv's shared cache;
- the **source builder** (`RUNNER_SOURCE_USER`, default `scu-src`, UID 8006) runs uv for
  overlays that build packages from source, whose build code is arbitrary code.

Each is a user name of the image or `UID:GID`. A process switches for good: supplementary
groups, GID, then UID (real, effective and saved: root can set all three), then
`PR_SET_NO_NEW_PRIVS`, so that no set-user-ID file can give anything back. A process that
changed its UIDs this way is not dumpable: a process of the same user cannot ptrace it or
open its /proc files (its pipes and sockets among them).
"""

from __future__ import annotations

import contextlib
import os
import signal

JOB_VARIABLE = "RUNNER_JOB_USER"
BUILD_VARIABLE = "RUNNER_BUILD_USER"
SOURCE_VARIABLE = "RUNNER_SOURCE_USER"
DEFAULT_BUILD_USER = "scu-build"
DEFAULT_SOURCE_USER = "scu-src"
VARIABLES = (JOB_VARIABLE, BUILD_VARIABLE, SOURCE_VARIABLE)
_PR_SET_NO_NEW_PRIVS = 38


class IdentityError(Exception):
    """An identity that does not exist, or one that would share a UID with another."""


class Identity:
    __slots__ = ("gid", "groups", "home", "name", "uid")

    def __init__(self, name: str, uid: int, gid: int, groups: tuple[int, ...], home: str) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.home = home

    def __str__(self) -> str:
        return f"{self.name} ({self.uid}:{self.gid})"

    def become(self) -> None:
        """Switch this process to the identity, for good (only root may)."""
        os.setgroups(list(self.groups))
        os.setgid(self.gid)
        os.setuid(self.uid)
        _no_new_privileges()

    def environment(self, environ: dict[str, str], home: str | None = None) -> dict[str, str]:
        """`environ` as a login of this identity would see it: HOME, USER, LOGNAME; the runner's variables gone."""
        env = {key: value for key, value in environ.items() if key not in VARIABLES}
        env.update({"HOME": home or self.home, "USER": self.name, "LOGNAME": self.name})
        return env


def identity(spec: str) -> Identity:
    """`name` (looked up in the image's /etc/passwd, with its groups) or `UID:GID` (no supplementary group)."""
    spec = spec.strip()
    uid_text, colon, gid_text = spec.partition(":")
    if colon and uid_text.isdigit() and gid_text.isdigit():
        return Identity(spec, int(uid_text), int(gid_text), (), "/")
    import pwd

    try:
        entry = pwd.getpwnam(spec)
    except KeyError:
        raise IdentityError(f"no user {spec!r} in this image") from None
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir or "/")


class Identities:
    """The job user and both builders."""

    def __init__(self, job: Identity, build: Identity, source: Identity) -> None:
        self.job = job
        self.build = build
        self.source = source

    @classmethod
    def with_builders(cls, job: Identity, environ: dict[str, str]) -> Identities:
        """The builders are looked up only when an overlay must be made: a job without one never needs them."""
        return cls(
            job,
            identity(environ.get(BUILD_VARIABLE) or DEFAULT_BUILD_USER),
            identity(environ.get(SOURCE_VARIABLE) or DEFAULT_SOURCE_USER),
        )

    def check_apart(self) -> None:
        """Each identity a UID of its own, none of them root: a shared UID would undo the separation."""
        named = (("the job's user", self.job), ("the builder", self.build), ("the source builder", self.source))
        for role, who in named:
            if who.uid == 0:
                raise IdentityError(f"{role} {who} is root")
        for position, (role, who) in enumerate(named):
            for other_role, other in named[position + 1 :]:
                if who.uid == other.uid:
                    raise IdentityError(f"{role} {who} and {other_role} {other} share UID {who.uid}")


def supervised(environ: dict[str, str] | os._Environ[str]) -> bool:
    """Whether this runner is the image's supervisor: root, handed a job user by the entrypoint."""
    return bool(environ.get(JOB_VARIABLE)) and os.geteuid() == 0


def kill_processes_of(who: Identity) -> None:
    """SIGKILL every process `who` runs in this PID namespace (a build's leftovers), in one atomic sweep.

    A child switches to `who` and calls kill(-1): the kernel signals every process the caller
    may signal (same real or saved UID) but itself, holding the task list, so nothing forked
    meanwhile escapes. Processes of other containers are in other PID namespaces.
    """
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        status = 0
        try:
            os.setgroups([])
            os.setgid(who.gid)
            os.setuid(who.uid)
            with contextlib.suppress(ProcessLookupError):  # nothing of that user runs
                os.kill(-1, signal.SIGKILL)
        except BaseException:
            status = 1
        os._exit(status)
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise IdentityError(f"could not stop the processes of {who}")


def _no_new_privileges() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
