"""Issue 13, Docker path: the image build never sees the host's package cache.

micromamba installs inside the build (the shared stage, then the flavor) from archives it
downloads and checks against the export's sha256, into an empty package cache that the same
RUN removes. The build plan must
keep it that way: no volume, mount or extra build context in the commands, no `RUN --mount`
in the Dockerfiles they use, even with a filled host cache named by RATTLER_CACHE_DIR.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.images.conftest import cli

MOUNT_FLAGS = ("-v", "--volume", "--mount", "--build-context", "--secret", "--ssh")


def test_build_plan_mounts_no_host_cache(ready_workspace: Path, tmp_path: Path) -> None:
    host_cache = tmp_path / "host-cache"
    (host_cache / "pkgs" / "numpy-2.0.0-py312_h0_0").mkdir(parents=True)
    done = cli(
        "build", "all", "--dry-run", "--json", "--manifest-path", ready_workspace,
        env={"RATTLER_CACHE_DIR": str(host_cache), "CONDA_PKGS_DIRS": str(host_cache / "pkgs")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert [s["name"] for s in steps] == ["common", "shared", "pytorch", "tensorflow"]
    for step in steps:
        command = step["command"]
        assert not [a for a in command if a in MOUNT_FLAGS or a.startswith(tuple(f + "=" for f in MOUNT_FLAGS))]
        assert not [a for a in command if str(host_cache) in a or "pkgs" in a or "RATTLER" in a]
        assert command[-1] == str(ready_workspace)  # the context is the checkout, which .dockerignore trims
        dockerfile = (ready_workspace / step["dockerfile"]).read_text()
        assert not re.search(r"^\s*RUN\s+--mount", dockerfile, re.MULTILINE), step["dockerfile"]
    for name, command in (("Dockerfile.shared", "micromamba create"), ("Dockerfile", "micromamba install")):
        dockerfile = (ready_workspace / "flavors" / name).read_text()
        install = next(block for block in dockerfile.split("\n\n") if command in block)
        assert "micromamba clean --all" in install and "rm -rf /opt/conda/pkgs" in install  # the same layer
