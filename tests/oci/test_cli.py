"""`python -m cli build FLAVOR --engine oci --base BASE.tar -o IMAGE.tar`, the form the acceptance checks call.

It gives the same manifest digest as the in-process build of the same workspace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.oci.conftest import REPO, Built, make_rootfs
from tests.runner.wheels import FakeWheel, build_wheel, write_simple_index
from tests.support.cli import error_line, run_cli


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
    assert done.returncode == 0, done.stderr
    assert image.is_file()
    assert built_images["pytorch"].result.manifest_digest in done.stdout


def test_cli_build_compression_gzip_gives_the_gzip_image(
    oci_workspace: Path, tmp_path: Path, gzip_image: Built
) -> None:
    base = make_rootfs(tmp_path / "base.tar")
    image = tmp_path / "image.tar"
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "cli",
        "build",
        "pytorch",
        "--engine",
        "oci",
        "--base",
        str(base),
        "-o",
        str(image),
    ]
    done = subprocess.run(
        [*command, "--compression", "gzip"], cwd=oci_workspace, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert gzip_image.result.manifest_digest in done.stdout
    wrong = subprocess.run(
        [*command, "--compression", "xz"], cwd=oci_workspace, env=env, capture_output=True, text=True, check=False
    )
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == "error: --compression 'xz' is not known (use one of zstd, gzip, none)"


def test_cli_build_engine_oci_names_what_is_missing(oci_workspace: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for args, expected in (
        (["all", "--base", "b.tar", "-o", "i.tar"], "builds one flavor image, not 'all'"),
        (["pytorch", "-o", "i.tar"], "needs --base BASE.tar and -o IMAGE.tar"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "cli", "build", *args, "--engine", "oci"],
            cwd=oci_workspace,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2
        assert expected in done.stderr and done.stderr.startswith("error:")
        assert not (oci_workspace / "i.tar").exists()


def test_a_flavor_with_locked_pypi_packages_is_refused_in_one_line(oci_workspace: Path, tmp_path: Path) -> None:
    """The OCI engine installs conda packages only: a flavor whose lock holds PyPI packages (really locked by uv
    from a local wheel index) is refused before any work, naming pixi.lock, the flavor and the way out."""
    wheel = build_wheel(tmp_path / "wheels", FakeWheel("basepkg", "1.0"))
    index = write_simple_index(wheel.parent, tmp_path / "simple").as_uri()
    manifest = oci_workspace / "pixi.toml"
    text = manifest.read_text().replace("[feature.pytorch.dependencies]", "[feature.pytorch.pypi-dependencies]\n"
                                        'basepkg = "*"\n\n[feature.pytorch.dependencies]', 1)  # fmt: skip
    manifest.write_text(text.replace("[feature.cuda", f'[pypi-options]\nindex-url = "{index}"\n\n[feature.cuda', 1))
    for step in (("lock",), ("export", "--ignore-pypi-errors"), ("generate",)):  # fresh: nothing else refuses
        done = run_cli(*step, cwd=oci_workspace)
        assert done.returncode == 0, (step, done.stderr)
    assert "basepkg-1.0-py3-none-any.whl" in (oci_workspace / "pixi.lock").read_text()
    image = tmp_path / "image.tar"
    base = make_rootfs(tmp_path / "base.tar")
    refused = run_cli("build", "pytorch", "--engine", "oci", "--base", base, "-o", image, cwd=oci_workspace)
    assert refused.returncode == 2
    assert error_line(refused) == (
        f"error: {oci_workspace / 'pixi.lock'}: flavor 'pytorch' locks 1 PyPI package (basepkg 1.0), which the OCI "
        "engine does not install: the image would lack them (make them conda dependencies of environment 'pytorch' "
        "in pixi.toml, or remove them from its pypi-dependencies, then run `python -m cli lock`)"
    )
    assert not image.exists() and not list(tmp_path.glob(".image.tar*"))
