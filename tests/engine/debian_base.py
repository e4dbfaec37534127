"""A real Debian base for the images, made by mmdebstrap from Debian's packages and cached between runs.

`mmdebstrap --variant=minbase --include=... --mode=root bookworm base.tar <mirror>` writes a
rootfs tarball (about 220 MB, about 1-2 minutes here) that both engines take as they are:
the OCI engine as `--base`, podman as the image the Dockerfiles' FROM names. It holds what
an image's base needs (sh, setpriv, usermod/groupmod/groupadd, getent, CA certificates) and
python3, which the fixture flavor's `python` package points at.

Where it is kept: `$OSPARC_ENGINE_TEST_CACHE`, else `~/.cache/osparc-ml-runners/engine-tests/`,
as `debian-<suite>-<hash of the recipe>.tar`. A changed recipe (packages, suite, mirror) is a
new file; delete the folder to rebuild. The mirror is read from the machine's apt sources
(deb822 `.sources` or one-line `sources.list` entries), so a machine with a local mirror uses it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from filelock import FileLock

from cli.oci.base import DEBIAN_BASE_PACKAGES

SUITE = "bookworm"
PACKAGES = ("python3", *DEBIAN_BASE_PACKAGES)  # the README's base, and the python3 the fixture flavor links to
CACHE_VARIABLE = "OSPARC_ENGINE_TEST_CACHE"
APT_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def cache_folder() -> Path:
    configured = os.environ.get(CACHE_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "osparc-ml-runners" / "engine-tests"


def debian_mirror() -> str:
    """The machine's Debian mirror (the URI of its `bookworm` main entry), else deb.debian.org."""
    files = [p for folder in APT_SOURCES if folder.is_dir() for p in sorted(folder.glob("*.sources"))]
    for path in files:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, flags=re.MULTILINE))
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
                return fields["URIs"].split()[0]
    lists = [APT_SOURCES[1], *sorted(APT_SOURCES[0].glob("*.list"))] if APT_SOURCES[0].is_dir() else [APT_SOURCES[1]]
    for path in lists:
        if path.is_file():
            match = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", path.read_text(), flags=re.MULTILINE)
            if match:
                return match.group(1)
    return DEFAULT_MIRROR


def mmdebstrap_command(mirror: str, target: Path | None = None) -> list[str]:
    """The command that writes the base to `target`; without one, what names the recipe (its cache key)."""
    options = ["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "--mode=root", SUITE]
    return [*options, *([str(target)] if target is not None else []), mirror]


def debian_base() -> Path:
    """The cached base tarball, built first if needed (one builder at a time across sessions)."""
    mirror = debian_mirror()
    key = hashlib.sha256(" ".join(mmdebstrap_command(mirror)).encode()).hexdigest()[:12]
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"debian-{SUITE}-{key}.tar"
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            return target
        if shutil.which("mmdebstrap") is None:
            raise RuntimeError("mmdebstrap is not installed (tests/run.sh installs it from Debian when run as root)")
        partial = target.with_suffix(".partial.tar")
        done = subprocess.run(
            mmdebstrap_command(mirror, partial), capture_output=True, text=True, timeout=1800, check=False
        )
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"mmdebstrap failed ({done.returncode}):\n{done.stderr[-3000:]}")
        partial.replace(target)
    return target


def python_version(base: Path) -> str:
    """The version of the base's python3 (from its /usr/lib/python3.X folder and Debian's package list)."""
    with tarfile.open(base) as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if name == "var/lib/dpkg/status":
                handle = archive.extractfile(member)
                assert handle is not None
                status = handle.read().decode()
                match = re.search(r"^Package: python3\.\d+-minimal\n(?:.+\n)*?Version: (\d+\.\d+\.\d+)", status, re.M)
                if match:
                    return match.group(1)
    raise RuntimeError(f"{base} holds no python3")
