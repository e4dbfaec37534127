"""podman as the tests drive it: a private store per session, the settings this kind of host needs.

Every call gets two variables that podman reads:
- CONTAINERS_STORAGE_CONF: a storage.conf whose graphroot/runroot are in the session's
  temporary folder, so the tests neither see nor touch the machine's images and containers
  (nor another test session's), and removing the folder removes everything.
- CONTAINERS_CONF: a containers.conf with what a root podman 4.3 needs in a sandbox
  without CAP_SYS_RESOURCE and with hybrid cgroups (design.md, "Facts checked"): the
  runc runtime (crun fails there), explicit ulimits, no network (nothing a test runs may
  reach the internet), and the read-only binds every container and `podman build` RUN
  step gets (the fixture channel, which the exported lock names by file:// URL).
`cli build --engine podman` inherits both, so it runs unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ULIMITS = ("nofile=20000:20000", "nproc=30000:30000")


def unavailable_reason() -> str | None:
    """Why podman cannot run here at all, or None."""
    if os.geteuid() != 0:
        return "the real-engine tests run podman as root (rootless podman needs subuid ranges this CI does not have)"
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (tests/run.sh installs podman, runc, uidmap, fuse-overlayfs from Debian)"
    return None


def _toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(f'"{value}"' for value in values) + "]"


@dataclass
class Podman:
    """podman with a private store under `root`; `binds` are mounted read-only into every container and build."""

    root: Path
    binds: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        storage = self.root / "storage.conf"
        storage.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root / "graph"}"\nrunroot = "{self.root / "run"}"\n'
        )
        volumes = [f"{path}:{path}:ro" for path in self.binds]
        (self.root / "containers.conf").write_text(
            "[containers]\n"
            f"default_ulimits = {_toml_list(ULIMITS)}\n"
            'netns = "none"\n'
            f"volumes = {_toml_list(volumes)}\n"
            "[engine]\n"
            'runtime = "runc"\n'
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
        }

    def run(self, *args: str | Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *map(str, args)], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}")
        return done

    def smoke_test(self, image: str) -> str | None:
        """Why a container of `image` cannot start here, or None."""
        done = self.run("run", "--rm", image, "/bin/sh", "-c", "true", check=False, timeout=120)
        return None if done.returncode == 0 else f"podman cannot start a container here: {done.stderr.strip()}"

    def inspect(self, image: str) -> dict[str, object]:
        import json

        (document,) = json.loads(self.run("image", "inspect", image).stdout)
        assert isinstance(document, dict)
        return document

    def image_env(self, image: str) -> dict[str, str]:
        config = self.inspect(image)["Config"]
        assert isinstance(config, dict)
        return dict(item.split("=", 1) for item in config.get("Env") or [])

    def shell(self, image: str, script: str) -> subprocess.CompletedProcess[str]:
        """`script` run by /bin/sh in a throwaway container of `image`, past its entrypoint, as root."""
        return self.run("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script, check=False)

    def clean(self) -> None:
        """Remove every container and image of this private store, then the store."""
        self.run("rm", "--all", "--force", check=False)
        self.run("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
