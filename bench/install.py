"""Benchmark: `cli install` from a local HTTP server: cold, warm (verified and not), next to `cp -r`.

    .venv/bin/python bench/install.py [--packages 300] [--megabytes 1400] [--repeat 3] [--work DIR] [--scratch DIR]

Builds (once per --work folder) a channel of PACKAGES packages holding about MEGABYTES of files
with the test suite's channel helpers (rattler-build's assembler), a workspace whose one
environment needs all of them, and its lock. Serves the channel with `python -m http.server` on
127.0.0.1 in a process of its own, then measures, each the best of REPEAT runs (the cold one
once per repeat, with an empty cache):

- the server's own throughput: every archive fetched by `curl --parallel` into /dev/null (by 8
  Python threads where curl is missing);
- cold install: empty package cache, every archive downloaded by py-rattler through `--mirror`,
  sha256-checked, extracted, each entry checked against its paths.json, then linked;
- warm install (cache filled, entries remembered as verified) into a new prefix, in the default
  link mode (reflink: a clone, or a copy on file systems without clones) and with hard links;
  and the same without verification, and with verification but no memo (every file hashed);
- `cp -r` of the installed prefix (and `cp -al`, the hard-link copy), the bound for a copy.

Goal (issue 11/13): warm install within 2x of copying the same files; verification's cost shown
next to the unverified install. Archives are read from a warm page cache; each run starts after
`sync`. Copies of a gigabyte are disk-bound and, on a shared virtual disk, vary by several times
from one run to the next: `--scratch /dev/shm` puts cache, prefixes and copies in memory to
compare the work itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from cli.lockengine.install import InstallRequest, LinkMode, install_environment  # noqa: E402
from cli.lockengine.manifest import load_workspace  # noqa: E402
from tests.support.channel import FakePackage, build_channel  # noqa: E402
from tests.support.workspace import locked_one_package_workspace  # noqa: E402

BIG_EVERY = 30  # one package in 30 carries a large library, as torch or cudnn do


@dataclass
class Figure:
    label: str
    seconds: float
    megabytes: float

    @property
    def rate(self) -> float:
        return self.megabytes / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float | str]:
        return {"label": self.label, "seconds": round(self.seconds, 3), "mb_per_s": round(self.rate, 1)}


def text_of(rng: random.Random, size: int) -> str:
    """`size` characters of base64 over random bytes: text that compresses to about 3/4, as binaries do."""
    return base64.b64encode(rng.randbytes(size * 3 // 4)).decode()[:size]


def package_files(index: int, budget: int, rng: random.Random) -> dict[str, str]:
    """About `budget` bytes as text files: small modules, a medium file in one package of three, a big library."""
    files: dict[str, str] = {}
    folder = f"lib/python3.12/site-packages/pkg{index:03d}"
    if index % BIG_EVERY == 0:
        big = budget * 3 // 4
        files[f"lib/libpkg{index:03d}.so.txt"] = text_of(rng, big)
        budget -= big
    if index % 3 == 0:
        files[f"{folder}/data.bin.txt"] = text_of(rng, min(1 << 20, budget // 3))
        budget -= min(1 << 20, budget // 3)
    count = max(4, budget // (24 << 10))
    for number in range(count):
        size = budget // count
        files[f"{folder}/m{number:03d}.py"] = "# bench module\n" + text_of(rng, size)
    return files


def build_fixture(work: Path, packages: int, megabytes: int) -> Path:
    """A channel and a locked workspace under `work` (reused when already there)."""
    workspace = work / "ws"
    if (workspace / "pixi.lock").is_file():
        return workspace
    rng = random.Random(20250101)
    # big packages get 8x the share of the others
    shares = [8 if i % BIG_EVERY == 0 else 1 for i in range(packages)]
    unit = megabytes * 1_000_000 // sum(shares)
    fakes = [
        FakePackage(f"pkg{i:03d}", "1.0", "h0_0", files=package_files(i, unit * shares[i], rng))
        for i in range(packages)
    ]
    fakes.append(FakePackage("bench-env", "1.0", "h0_0", depends=[f.name for f in fakes], files={"share/x": "x\n"}))
    print(f"building {len(fakes)} packages of about {megabytes} MB in {work} (once) ...", file=sys.stderr)
    channel = build_channel(work / "channel", fakes, work=work / "assemble")
    shutil.rmtree(work / "assemble", ignore_errors=True)
    return locked_one_package_workspace(workspace, channel, "bench-env", "install-bench")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(channel: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(channel)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return server, url
        except OSError:
            time.sleep(0.05)
    server.terminate()
    raise RuntimeError("the channel server did not start")


def tree_bytes(folder: Path) -> int:
    total = 0
    for current, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(current, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


def fetch_all(urls: list[str]) -> None:
    """The server's throughput without curl: 8 threads reading every archive into nothing."""

    def fetch(url: str) -> None:
        with urllib.request.urlopen(url) as response:
            while response.read(1 << 20):
                pass

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(fetch, urls))


def settled(prepare: Callable[[], object], action: Callable[[], object]) -> float:
    """Prepare (untimed), flush what earlier runs left to write back, then time the action alone."""
    prepare()
    os.sync()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", type=int, default=300)
    parser.add_argument(
        "--megabytes", type=int, default=1400, help="total size of the installed files (archives: about 3/4 of it)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, help="keep the fixture here and reuse it (default: a temporary folder)")
    parser.add_argument(
        "--scratch",
        type=Path,
        help="where cache, prefixes and copies go (default: WORK/runs; /dev/shm takes the disk out)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    temporary = None if args.work else tempfile.TemporaryDirectory(prefix="install-bench-")
    work = args.work or Path(temporary.name)  # type: ignore[union-attr]
    try:
        return run(build_fixture(work.absolute(), args.packages, args.megabytes), work.absolute(), args)
    finally:
        if temporary is not None:
            temporary.cleanup()


def run(workspace_root: Path, work: Path, args: argparse.Namespace) -> int:
    workspace = load_workspace(workspace_root)
    channel = work / "channel"
    archives = sorted((channel / "linux-64").glob("*.conda")) + sorted((channel / "noarch").glob("*.conda"))
    archive_mb = sum(a.stat().st_size for a in archives) / 1e6
    server, url = start_server(channel)
    mirrors = {channel.as_uri() + "/": url + "/"}
    scratch = (args.scratch or work).absolute() / "install-bench-runs"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    cache = scratch / "cache"

    def install(prefix: Path, link: LinkMode, verify: bool = True) -> Callable[[], float]:
        def prepare_and_time() -> float:
            request = InstallRequest(
                "default",
                prefix,
                cache_dir=cache,
                show_progress=False,
                link=link,
                mirrors=mirrors,
                verify=verify,
                frozen=True,
            )
            return settled(
                lambda: shutil.rmtree(prefix, ignore_errors=True), lambda: install_environment(workspace, request)
            )

        return prepare_and_time

    def cold() -> float:
        def clear() -> None:
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(scratch / "cold", ignore_errors=True)

        request = InstallRequest(
            "default", scratch / "cold", cache_dir=cache, show_progress=False, mirrors=mirrors, frozen=True
        )
        return settled(clear, lambda: install_environment(workspace, request))

    def server_only() -> float:
        if shutil.which("curl") is None:
            return settled(lambda: None, lambda: fetch_all([f"{url}/{a.parent.name}/{a.name}" for a in archives]))
        listing = scratch / "urls.txt"
        listing.write_text("".join(f'url = "{url}/{a.parent.name}/{a.name}"\noutput = "/dev/null"\n' for a in archives))
        command = ["curl", "--no-progress-meter", "--fail", "--parallel", "--parallel-max", "50"]
        command += ["--config", str(listing)]
        return settled(lambda: None, lambda: subprocess.run(command, check=True))

    def no_memo() -> float:
        def clear() -> None:
            shutil.rmtree(scratch / "warm", ignore_errors=True)
            (cache / "verified.json").unlink(missing_ok=True)

        request = InstallRequest(
            "default",
            scratch / "warm",
            cache_dir=cache,
            show_progress=False,
            link=LinkMode.hardlink,
            mirrors=mirrors,
            frozen=True,
        )
        return settled(clear, lambda: install_environment(workspace, request))

    def copy(flag: str) -> Callable[[], float]:
        target = scratch / "copy"
        command = ["cp", flag, str(scratch / "cold"), str(target)]
        return lambda: settled(
            lambda: shutil.rmtree(target, ignore_errors=True), lambda: subprocess.run(command, check=True)
        )

    # Each round runs every measurement once, so that all of them sample the same machine load.
    measurements: dict[str, Callable[[], float]] = {
        "server": server_only,
        "cold": cold,
        "warm, reflink/copy (default), verified": install(scratch / "warm", LinkMode.reflink),
        "warm, reflink/copy (default), not verified": install(scratch / "warm", LinkMode.reflink, verify=False),
        "warm, hardlink, verified": install(scratch / "warm", LinkMode.hardlink),
        "warm, hardlink, not verified": install(scratch / "warm", LinkMode.hardlink, verify=False),
        "warm, hardlink, verified, no memo (every file hashed)": no_memo,
        "cp -r of the installed prefix": copy("-r"),
        "cp -al of the installed prefix (hard links)": copy("-al"),
    }
    times: dict[str, list[float]] = {label: [] for label in measurements}
    try:
        for _round in range(args.repeat):
            for label, measure in measurements.items():
                times[label].append(measure())
        installed_mb = tree_bytes(scratch / "cold") / 1e6
        files = sum(len(names) for _c, _d, names in os.walk(scratch / "cold"))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    best = {label: min(values) for label, values in times.items()}
    served, cold_seconds = best.pop("server"), best.pop("cold")
    cp_r, cp_al = best["cp -r of the installed prefix"], best["cp -al of the installed prefix (hard links)"]
    warm = {label: seconds for label, seconds in best.items() if label.startswith("warm")}

    figures = [
        Figure(f"server alone: curl --parallel, {len(archives)} archives", served, archive_mb),
        Figure("cold install (download, check, extract, link)", cold_seconds, archive_mb),
        *(Figure(label, seconds, installed_mb) for label, seconds in warm.items()),
        Figure("cp -r of the installed prefix", cp_r, installed_mb),
        Figure("cp -al of the installed prefix (hard links)", cp_al, installed_mb),
    ]
    spread = {label: [round(t, 2) for t in values] for label, values in times.items()}
    default_warm = warm["warm, reflink/copy (default), verified"]
    result = {
        "packages": len(archives),
        "files": files,
        "installed_mb": round(installed_mb, 1),
        "archives_mb": round(archive_mb, 1),
        "cores": os.cpu_count(),
        "scratch": str(scratch),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "figures": [f.as_dict() for f in figures],
        "all_runs": spread,
        "cold_vs_server": round(cold_seconds / served, 2),
        "warm_default_vs_cp_r": round(default_warm / cp_r, 2),
        "verification_overhead_default": round(default_warm / warm["warm, reflink/copy (default), not verified"], 2),
        "goal_warm_within_2x_of_copy": default_warm <= 2 * cp_r,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{len(archives)} packages, {files} files, {installed_mb:.0f} MB installed, "
        f"{archive_mb:.0f} MB of archives, {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f}); "
        f"best of {args.repeat}"
    )
    for figure in figures:
        print(f"  {figure.label:<58} {figure.seconds:7.2f} s  {figure.rate:7.0f} MB/s")
    print(f"cold install takes {result['cold_vs_server']}x the server's own time for the same archives")
    print(
        f"warm install (default link, verified) takes {result['warm_default_vs_cp_r']}x cp -r "
        f"(goal: within 2x: {'met' if result['goal_warm_within_2x_of_copy'] else 'NOT met'}); "
        f"verification costs {result['verification_overhead_default']}x the unverified install"
    )
    return 0


if __name__ == "__main__":
    from cli.process_exit import run_then_exit

    run_then_exit(main)  # py-rattler ran in this process: see cli/process_exit.py
