"""Benchmark: `audit prefix` on a prefix of a few thousand files, against `sha256sum` on the same files.

    .venv/bin/python bench/audit.py [--files 3000] [--repeat 3]

Builds (in a temporary folder) a conda package with FILES files of mixed sizes with the test
suite's channel helpers, locks and installs it with the CLI's own engine, then times:

- `audit prefix` (conda-meta read, package comparison, every file hashed, unexpected-file walk),
  with its default thread pool and with one thread;
- bare hashlib (read and hash, nothing else) over exactly the files the audit hashes: the bound;
- `sha256sum` over the same files, in one process and with `xargs -P` (and `openssl dgst` if present).

Note that coreutils' sha256sum may not use the CPU's SHA instructions while Python's hashlib
(OpenSSL) does, so the audit can beat it; bare hashlib is the fair bound.

The goal is an audit bounded by hashing speed: its MB/s close to sha256sum's. Best of
REPEAT runs each, on a warm page cache (the files were just written), so disk speed is out.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from cli.audit.prefix import audit_prefix  # noqa: E402
from cli.file_hashing import default_workers, sha256_of  # noqa: E402
from cli.lockengine.install import InstallRequest, install_environment  # noqa: E402
from cli.lockengine.manifest import load_workspace  # noqa: E402
from cli.process_exit import run_then_exit  # noqa: E402
from tests.support.channel import FakePackage, build_channel  # noqa: E402
from tests.support.workspace import locked_one_package_workspace  # noqa: E402


@dataclass
class Timing:
    label: str
    seconds: float
    megabytes: float
    files: int

    @property
    def rate(self) -> float:
        return self.megabytes / self.seconds if self.seconds else 0.0


def file_sizes(count: int) -> list[int]:
    """Mostly small and medium files (4-128 KiB, as in site-packages), one in a hundred of 2 MiB (a library)."""
    return [2 << 20 if i % 100 == 99 else 4096 * (1 + i % 32) for i in range(count)]


def package_files(count: int) -> dict[str, str]:
    rng = random.Random(20250101)
    files = {}
    for index, size in enumerate(file_sizes(count)):
        folder = f"lib/python3.12/site-packages/bench_data/m{index % 40:02d}"
        files[f"{folder}/f{index:05d}.txt"] = rng.randbytes(size // 2).hex()
    return files


def build_prefix(root: Path, count: int) -> tuple[Path, Path]:
    channel = build_channel(
        root / "channel", [FakePackage("bench-data", "1.0", "h0_0", files=package_files(count))], work=root / "work"
    )
    shutil.rmtree(root / "work", ignore_errors=True)
    workspace_root = locked_one_package_workspace(root / "ws", channel, "bench-data", "audit-bench")
    workspace = load_workspace(workspace_root)
    prefix = root / "prefix"
    install_environment(
        workspace, InstallRequest("default", prefix, platform="linux-64", cache_dir=root / "cache", show_progress=False)
    )
    return workspace_root, prefix


def best(repeat: int, run: object) -> float:
    assert callable(run)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def sha256sum_files(prefix: Path) -> list[str]:
    """The files the audit hashes: every package file with a recorded sha256 (here: all but conda-meta)."""
    return sorted(
        os.path.join(folder, name)
        for folder, dirs, names in os.walk(prefix)
        if not os.path.relpath(folder, prefix).startswith("conda-meta")
        for name in names
        if not (folder == str(prefix) and name == "CACHEDIR.TAG")
    )


def run_hasher(command: list[str], files: list[str], parallel: int) -> None:
    listing = "\0".join(files).encode()
    xargs = ["xargs", "-0", "-n", "500", "-P", str(parallel), *command]
    subprocess.run(xargs, input=listing, stdout=subprocess.DEVNULL, check=True)


def run_hashlib(files: list[str]) -> None:
    """The bound: read and hash the same files in this process, one thread, nothing else."""
    for name in files:
        sha256_of(name, os.path.getsize(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=3000, help="files in the package (default 3000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best counts")
    args = parser.parse_args(argv)
    if shutil.which("sha256sum") is None:
        print("sha256sum is not on PATH", file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as folder:
        root = Path(folder)
        os.environ.setdefault("RATTLER_CACHE_DIR", str(root / "cache"))
        started = time.perf_counter()
        workspace_root, prefix = build_prefix(root, args.files)
        setup = time.perf_counter() - started
        workspace = load_workspace(workspace_root)
        files = sha256sum_files(prefix)
        megabytes = sum(os.path.getsize(f) for f in files) / 1e6

        result = audit_prefix(workspace, "default", prefix)
        if result.findings():
            print(f"unexpected findings: {[f.line() for f in result.findings()]}", file=sys.stderr)
            return 1
        hashed = result.stats.files_hashed
        timings = [
            Timing(
                f"audit prefix ({default_workers()} threads)",
                best(args.repeat, lambda: audit_prefix(workspace, "default", prefix)),
                megabytes,
                hashed,
            ),
            Timing(
                "audit prefix (1 thread)",
                best(args.repeat, lambda: audit_prefix(workspace, "default", prefix, workers=1)),
                megabytes,
                hashed,
            ),
            Timing(
                "hashlib, no audit (1 thread)", best(args.repeat, lambda: run_hashlib(files)), megabytes, len(files)
            ),
            Timing(
                "sha256sum (1 process)",
                best(args.repeat, lambda: run_hasher(["sha256sum", "--"], files, 1)),
                megabytes,
                len(files),
            ),
            Timing(
                f"sha256sum (xargs -P {cores})",
                best(args.repeat, lambda: run_hasher(["sha256sum", "--"], files, cores)),
                megabytes,
                len(files),
            ),
        ]
        if shutil.which("openssl"):
            timings.append(
                Timing(
                    "openssl dgst -sha256 (1 process)",
                    best(args.repeat, lambda: run_hasher(["openssl", "dgst", "-sha256"], files, 1)),
                    megabytes,
                    len(files),
                )
            )
    print(f"setup (build, lock, install): {setup:.1f} s; {cores} CPU cores; Python {sys.version.split()[0]}")
    print()
    print("| Measurement | Files | MB | Seconds | MB/s |")
    print("|---|---:|---:|---:|---:|")
    for timing in timings:
        print(
            f"| {timing.label} | {timing.files} | {timing.megabytes:.1f} | {timing.seconds:.3f} | {timing.rate:.0f} |"
        )
    bound = timings[2].rate
    sha256sum = max(t.rate for t in timings if t.label.startswith("sha256sum"))
    print()
    for timing in timings[:2]:
        print(
            f"{timing.label}: {timing.rate / bound:.0%} of bare hashlib on one thread, "
            f"{timing.rate / sha256sum:.0%} of the best sha256sum"
        )
    print(f"load average during the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {cores} cores")
    return 0


if __name__ == "__main__":
    run_then_exit(main)  # py-rattler ran in this process: see cli/process_exit.py
