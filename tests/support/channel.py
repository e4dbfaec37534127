"""Build a real conda channel on disk from tiny packages (rattler-build's assembler + rattler's indexer).

Nothing here touches the network: every package is assembled from a few text files,
indexed with `rattler.index.index_fs`, and served as a `file://` channel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import rattler_build
from rattler.index import index_fs

from cli.process_exit import run_then_exit

FIXED_TIME = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class FakePackage:
    name: str
    version: str
    build: str
    subdir: str = "linux-64"
    build_number: int = 0
    depends: list[str] = field(default_factory=list)
    constrains: list[str] = field(default_factory=list)
    track_features: list[str] = field(default_factory=list)
    license: str = "MIT"
    # relative path -> text content; None means "a small default set"
    files: dict[str, str] | None = None
    # relative path -> symlink target
    symlinks: dict[str, str] = field(default_factory=dict)

    @property
    def noarch(self) -> str | None:
        return "generic" if self.subdir == "noarch" else None

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.conda"


def default_files(package: FakePackage) -> dict[str, str]:
    return {
        f"share/{package.name}/README.txt": f"{package.name} {package.version} ({package.build})\n",
        f"share/{package.name}/data/values.txt": "\n".join(str(i) for i in range(50)) + "\n",
    }


def assemble(package: FakePackage, channel: Path, work: Path) -> Path:
    files_dir = work / f"{package.name}-{package.version}-{package.build}-{package.subdir}"
    shutil.rmtree(files_dir, ignore_errors=True)
    files_dir.mkdir(parents=True)
    for relative, text in (package.files if package.files is not None else default_files(package)).items():
        target = files_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if relative.startswith("bin/"):
            target.chmod(0o755)
    for relative, link_target in package.symlinks.items():
        link = files_dir / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link_target, link)
    out_dir = channel / package.subdir
    out_dir.mkdir(parents=True, exist_ok=True)
    output = rattler_build.assemble_package(
        package.name,
        package.version,
        package.subdir,
        package.build,
        out_dir,
        files_dir=files_dir,
        depends=package.depends,
        constrains=package.constrains,
        build_number=package.build_number,
        noarch=package.noarch,  # type: ignore[arg-type]
        license=package.license,
        timestamp=FIXED_TIME,
        compression_level=1,
        detect_prefix=False,
    )
    return Path(output.path)


def build_channel(channel: Path, packages: list[FakePackage], work: Path | None = None) -> Path:
    """Assemble `packages` into `channel`, index it, and add track_features to repodata.

    The assembler has no track_features option, so they are written into the indexed
    repodata, which is what a solver reads (conda-forge does the same with repodata patches).
    """
    work = work or channel.parent / f".{channel.name}-work"
    for subdir in ("noarch", *sorted({p.subdir for p in packages} - {"noarch"})):
        (channel / subdir).mkdir(parents=True, exist_ok=True)
    for package in packages:
        assemble(package, channel, work)
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False))
    _write_track_features(channel, packages)
    return channel


def _write_track_features(channel: Path, packages: list[FakePackage]) -> None:
    for subdir in {p.subdir for p in packages if p.track_features}:
        repodata_path = channel / subdir / "repodata.json"
        repodata = json.loads(repodata_path.read_text())
        for package in packages:
            if package.subdir == subdir and package.track_features:
                record = repodata["packages.conda"][package.file_name]
                record["track_features"] = " ".join(package.track_features)
        repodata_path.write_text(json.dumps(repodata, indent=2, sort_keys=True))


def host_python() -> str:
    return str(Path(sys.executable).resolve())


def gpu_stack_packages(python_target: str | None = None) -> list[FakePackage]:
    """A small model of conda-forge's GPU stacks: cpu and cuda builds of pytorch, torchvision and tensorflow.

    As on conda-forge, the cuda builds carry the higher build number and the cpu builds a
    track_feature, so a solver prefers cuda when `__cuda` is there and falls back otherwise.
    `python` is a symlink to `python_target` (the interpreter running the tests) so that an
    installed prefix has a working `bin/python`.
    """
    python_link = {"bin/python": python_target or host_python(), "bin/python3": "python"}
    packages = [
        FakePackage("cuda-version", "12.4", "h0_3", "noarch", 3, constrains=["__cuda >=12", "cudatoolkit 12.4|12.4.*"]),
        FakePackage("cuda-version", "11.8", "h0_3", "noarch", 3, constrains=["__cuda >=11", "cudatoolkit 11.8|11.8.*"]),
        FakePackage(
            "cudnn",
            "9.1.0",
            "h1_0",
            depends=["cuda-version >=12,<13"],
            license="LicenseRef-cuDNN-Software-License-Agreement",
        ),
        FakePackage(
            "python",
            "3.12.0",
            "h0_0_cpython",
            license="Python-2.0",
            files={"lib/python3.12/os.txt": "fake stdlib marker\n"},
            symlinks=python_link,
        ),
        FakePackage(
            "python",
            "3.12.0",
            "h0_0_cpython",
            "osx-arm64",
            license="Python-2.0",
            files={"lib/python3.12/os.txt": "fake\n"},
        ),
        FakePackage("uv", "0.5.0", "h0_0", license="Apache-2.0 OR MIT"),
        FakePackage("uv", "0.5.0", "h0_0", "osx-arm64", license="Apache-2.0 OR MIT"),
        FakePackage("numpy", "2.0.0", "py312_h0_0", depends=["python >=3.12,<3.13"], license="BSD-3-Clause"),
        FakePackage("pytest", "8.0.0", "pyh0_0", "noarch", depends=["python >=3.9"]),
    ]
    for version in ("2.4.0", "2.5.0"):
        packages += [
            FakePackage(
                "pytorch",
                version,
                "cpu_mkl_py312_h1_0",
                build_number=0,
                track_features=["pytorch-cpu"],
                depends=["python >=3.12,<3.13", "numpy >=1.23"],
                license="BSD-3-Clause",
            ),
            FakePackage(
                "pytorch",
                version,
                "cuda124_py312_h2_300",
                build_number=300,
                depends=["python >=3.12,<3.13", "numpy >=1.23", "__cuda", "cuda-version >=12.4,<13", "cudnn >=9,<10"],
                license="BSD-3-Clause",
            ),
        ]
    packages += [
        FakePackage(
            "torchvision",
            "0.20.0",
            "cpu_py312_h3_0",
            depends=["pytorch * cpu*", "python >=3.12,<3.13"],
            track_features=["torchvision-cpu"],
            license="BSD-3-Clause",
        ),
        FakePackage(
            "torchvision",
            "0.20.0",
            "cuda124_py312_h4_100",
            build_number=100,
            depends=["pytorch * cuda*", "python >=3.12,<3.13", "__cuda"],
            license="BSD-3-Clause",
        ),
        FakePackage(
            "tensorflow",
            "2.17.0",
            "cpu_py312_h5_0",
            track_features=["tensorflow-cpu"],
            depends=["python >=3.12,<3.13", "numpy >=1.23"],
            license="Apache-2.0",
        ),
        FakePackage(
            "tensorflow",
            "2.17.0",
            "cuda120py312_h6_202",
            build_number=202,
            depends=["python >=3.12,<3.13", "numpy >=1.23", "__cuda", "cuda-version >=12,<13", "cudnn >=9,<10"],
            license="Apache-2.0",
        ),
    ]
    return packages


def main() -> None:
    """`python -m tests.support.channel DIR`: the GPU-stack fixture channel built into DIR, as its own process.

    The process ends as the CLI does, right before interpreter finalization (bench/stress_exit.py runs it).
    """
    parser = argparse.ArgumentParser(description="Build the GPU-stack fixture channel into CHANNEL.")
    parser.add_argument("channel", type=Path, help="the channel folder to create")
    args = parser.parse_args()
    build_channel(args.channel, gpu_stack_packages())
    print(args.channel)


if __name__ == "__main__":
    run_then_exit(main)
