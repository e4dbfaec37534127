"""`python -m cli build FLAVOR --engine oci --base BASE.tar -o IMAGE.tar`, the form the acceptance checks call.

It skips while `cli build` does not offer `--engine oci` yet (the wiring is cli/commands/build.py's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.oci.conftest import REPO, Built, make_rootfs


def test_cli_build_engine_oci_gives_the_same_image(
    oci_workspace: Path, tmp_path: Path, built_images: dict[str, Built]
) -> None:
    base = make_rootfs(tmp_path / "base.tar")
    image = tmp_path / "out" / "image.tar"
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "cli", "build", "pytorch", "--engine", "oci", "--base", str(base), "-o", str(image)],
        cwd=oci_workspace,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 2 and ("'oci' is not one of" in done.stderr or "No such option" in done.stderr):
        pytest.skip("`cli build` has no --engine oci yet")
    assert done.returncode == 0, done.stderr
    assert image.is_file()
    assert built_images["pytorch"].result.manifest_digest in done.stdout
