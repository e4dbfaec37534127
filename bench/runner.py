"""Benchmark: what the runner adds to a bare `python script.py`, side by side on this machine.

    python bench/runner.py [--repeat N] [--markdown]

Ways of running the same small script, interleaved N times so that machine noise hits
them alike, with the same base environment (a venv with one package and `packaging`,
standing in for the flavor's environment):

1. bare `python script.py`;
2. the runner, no requirements.txt;
3. the runner, requirements.txt with a cached overlay (one small package): its seal is
   checked (every file re-hashed) before it is used;
4. the runner, requirements.txt with a cached overlay of about 100 MB (2000 modules and
   their byte code, 12 binary blobs), seal checked likewise;
5. the runner, requirements.txt with a cold overlay (empty overlay cache, warm uv cache);
6. the public runner's way: `uv pip install -r requirements.txt` into the environment on
   every run (each run starts from an environment without the package, as a fresh
   container does), then `python script.py`;
7. for information: the runner started as `python -S -m runner` (it needs no site-packages
   of its own), which an image's run script may use.

Each way is reported in wall-clock time and in CPU time (user + system of all the
processes it started), the steadier figure on a shared machine.

Then, once, what sealing costs on the ~100 MB overlay: uv's `--link-mode copy` (what the
runner uses, so that an overlay shares no inode with uv's cache) against `hardlink` (uv's
default), each a fresh install from a warm uv cache; and the seal check alone, in process.

The runner's bytecode is compiled first (runner/__pycache__, ignored by git), as an
image should ship it. Offline: the wheels are written by hand (tests/runner/wheels.py) and served with
UV_FIND_LINKS; nothing is downloaded. Prints medians, ratios and the time added to bare.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for tests.runner.wheels; this file is bench/runner.py, never `import runner` here

from tests.runner.wheels import FakeWheel, build_wheel, wheel_from_installed, write_wheel  # noqa: E402

SCRIPT = """\
import os, sys
out = os.environ.get("OUTPUT_1", os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(out, "result.txt"), "w") as handle:
    handle.write("%d\\n" % sum(range(100000)))
print("done")
"""
WAYS = (
    "bare python script.py",
    "runner, no requirements",
    "runner, cached overlay",
    "runner, cached overlay ~100 MB",
    "runner, cold overlay",
    "public way: uv pip install + run",
    "runner -S, no requirements",
)
LARGE_MODULES = 2000
LARGE_BLOBS = 12
BLOB_BYTES = 8 * 1024 * 1024


def find_uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(found).exists():
        sys.exit("bench: uv not found on PATH or next to this Python")
    return found


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.uv = find_uv()
        self.wheels = root / "wheels"
        self.base = root / "base"
        self.python = self.base / "bin" / "python"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "INPUT_", "OUTPUT_"))}
        self.env.pop("VIRTUAL_ENV", None)
        self.env.pop("PYTHONPATH", None)
        self.env = {k: v for k, v in self.env.items() if not k.startswith(("PIP_", "UV_"))}
        self.env.update(
            {
                "PIP_CONFIG_FILE": os.devnull,  # this machine's pip.conf would add indexes
                "UV_OFFLINE": "1",
                "UV_FIND_LINKS": str(self.wheels),
                "UV_CACHE_DIR": str(root / "uv-cache"),
                "UV_NO_PROGRESS": "1",
                "RUNNER_UV": self.uv,
                "RUNNER_LOG_LEVEL": "WARNING",
            }
        )
        self.cold_runs = 0
        self.runs = 0

    def setup(self) -> None:
        build_wheel(self.wheels, FakeWheel("benchbase", "1.0"))
        build_wheel(self.wheels, FakeWheel("benchpkg", "1.0", requires=("benchbase>=1",)))
        write_large_wheel(self.wheels)
        wheel_from_installed(self.wheels, "packaging")  # the runner reads requirements with it, as in a flavor
        self.quiet([self.uv, "venv", str(self.base), "--python", sys.executable, "--quiet"])
        base_packages = ["benchbase==1.0", "packaging"]
        self.quiet([self.uv, "pip", "install", "--python", str(self.python), *base_packages, "--quiet"])
        # The runner's bytecode, as an image should ship it (PYTHONDONTWRITEBYTECODE would otherwise
        # make every run compile the runner from source).
        self.quiet([str(self.python), "-m", "compileall", "-q", "-x", "/examples/", str(REPO / "runner")])
        for name, requirements in (("plain", None), ("reqs", "benchpkg\n"), ("large", "benchlarge\n")):
            code = self.root / name / "input" / "input_1"
            code.mkdir(parents=True)
            (code / "script.py").write_text(SCRIPT)
            if requirements:
                (code / "requirements.txt").write_text(requirements)
        # Warm what every way shares: uv's cache and the cached overlays.
        self.cached_overlay()
        self.cached_large_overlay()
        self.public_way()

    def quiet(self, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        result = subprocess.run(command, env=env or self.env, cwd=cwd, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"bench: {' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def runner(self, job: str, cache: Path, flags: tuple[str, ...] = ()) -> None:
        self.runs += 1  # a fresh output folder each run, as oSPARC gives (the runner refuses a used one)
        env = {
            **self.env,
            "INPUT_FOLDER": str(self.root / job / "input"),
            "OUTPUT_FOLDER": str(self.root / job / f"output-{self.runs}"),
            "RUNNER_CACHE_DIR": str(cache),
        }
        self.quiet([str(self.python), *flags, "-m", "runner"], env=env, cwd=REPO)

    def no_requirements_without_site(self) -> None:
        """`python -S -m runner`: the runner itself needs no site-packages (an option for the image's run script)."""
        self.runner("plain", self.root / "overlay-cache", ("-S",))

    def bare(self) -> None:
        self.quiet([str(self.python), "script.py"], cwd=self.root / "plain" / "input" / "input_1")

    def no_requirements(self) -> None:
        self.runner("plain", self.root / "overlay-cache")

    def cached_overlay(self) -> None:
        self.runner("reqs", self.root / "overlay-cache")

    def cached_large_overlay(self) -> None:
        self.runner("large", self.root / "overlay-cache")

    def cold_overlay(self) -> None:
        self.cold_runs += 1
        self.runner("reqs", self.root / f"cold-cache-{self.cold_runs}")

    def public_way(self) -> None:
        code = self.root / "reqs" / "input" / "input_1"
        install = [self.uv, "pip", "install", "--python", str(self.python), "-r", "requirements.txt", "--quiet"]
        self.quiet(install, cwd=code)
        self.quiet([str(self.python), "script.py"], cwd=code)

    def reset_public_way(self) -> None:
        """Untimed: the next public-way run starts, like a fresh container, without the package."""
        self.quiet([self.uv, "pip", "uninstall", "--python", str(self.python), "benchpkg", "--quiet"])


def write_large_wheel(folder: Path) -> Path:
    """`benchlarge`: about 100 MB installed, the shape of a real ML package (many modules, a few big binaries)."""
    info = "benchlarge-1.0.dist-info"
    noise = random.Random(0)
    files: dict[str, bytes] = {
        f"benchlarge/sub{n // 100}/mod{n}.py": f"VALUE_{n} = {n}\n{'# padding' * 200}\n".encode()
        for n in range(LARGE_MODULES)
    }
    files.update({f"benchlarge/sub{n // 100}/__init__.py": b"" for n in range(0, LARGE_MODULES, 100)})
    files["benchlarge/__init__.py"] = b"VERSION = '1.0'\n"
    files.update({f"benchlarge/_lib{n}.so": noise.randbytes(BLOB_BYTES) for n in range(LARGE_BLOBS)})
    files[f"{info}/METADATA"] = b"Metadata-Version: 2.1\nName: benchlarge\nVersion: 1.0\n"
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return write_wheel(folder / "benchlarge-1.0-py3-none-any.whl", info, files)


def sealing_costs(bench: Bench, repeat: int) -> list[tuple[str, float, str]]:
    """The costs of points 2 and 3 on the ~100 MB overlay: copy against hardlink, and the seal check alone."""
    rows = []
    for mode in ("hardlink", "copy"):
        times = []
        for n in range(repeat):
            venv = bench.root / f"linkmode-{mode}-{n}"
            bench.quiet([bench.uv, "venv", str(venv), "--python", str(bench.python), "--quiet"])
            started = time.perf_counter()
            install = ["pip", "install", "--python", str(venv / "bin" / "python"), "--link-mode", mode, "benchlarge"]
            bench.quiet([bench.uv, *install, "--quiet"])
            times.append(time.perf_counter() - started)
            if mode == "copy" and n == 0:
                copies = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    bench.quiet(["cp", "-r", str(venv), str(bench.root / "cp-copy")])
                    copies.append(time.perf_counter() - started)
                    shutil.rmtree(bench.root / "cp-copy")
            shutil.rmtree(venv)
        rows.append((f"uv pip install, --link-mode {mode} (warm uv cache)", statistics.median(times) * 1000, "ms"))
    rows.append(("for scale: cp -r of that installed venv", statistics.median(copies) * 1000, "ms"))
    overlays = bench.root / "overlay-cache" / "overlays"
    [large] = [p for p in overlays.iterdir() if "benchlarge" in (p / "overlay.json").read_text()]
    size = sum(f.stat().st_size for f in large.rglob("*") if f.is_file() and not f.is_symlink())
    files = sum(1 for f in large.rglob("*") if f.is_file())
    code = (
        "import json, sys, time; from pathlib import Path; from runner import seal; "
        "folder = Path(sys.argv[1]); digest = json.loads((folder / 'overlay.json').read_text())['manifest_sha256']; "
        "times = []\nfor _ in range(int(sys.argv[2])):\n"
        "    started = time.perf_counter(); assert seal.check(folder, digest, frozenset({'overlay.json'})) is None; "
        "times.append(time.perf_counter() - started)\n"
        "print(sorted(times)[len(times) // 2])"
    )
    checked = subprocess.run(
        [str(bench.python), "-c", code, str(large), str(repeat)], cwd=REPO, capture_output=True, text=True, check=True
    )
    seconds = float(checked.stdout)
    rows.append((f"seal check alone ({files} files, {size / 1e6:.0f} MB)", seconds * 1000, "ms"))
    rows.append(("seal check throughput", size / 1e6 / seconds, "MB/s"))
    return rows


def measure(bench: Bench, repeat: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock ms and CPU ms (user + system of every process the way started) of each run of each way.

    CPU time is the steadier figure on a shared machine: other processes stretch the wall clock, not it.
    """
    timings: dict[str, list[float]] = {way: [] for way in WAYS}
    cpu: dict[str, list[float]] = {way: [] for way in WAYS}
    ways = (
        bench.bare,
        bench.no_requirements,
        bench.cached_overlay,
        bench.cached_large_overlay,
        bench.cold_overlay,
        bench.public_way,
        bench.no_requirements_without_site,
    )
    actions: dict[str, Callable[[], None]] = dict(zip(WAYS, ways, strict=True))
    for _ in range(repeat):
        bench.reset_public_way()
        for way, action in actions.items():
            before = _children_cpu()
            started = time.perf_counter()
            action()
            timings[way].append((time.perf_counter() - started) * 1000)
            cpu[way].append((_children_cpu() - before) * 1000)
    return timings, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(timings: dict[str, list[float]], cpu: dict[str, list[float]], markdown: bool) -> str:
    bare = statistics.median(timings[WAYS[0]])
    bare_cpu = statistics.median(cpu[WAYS[0]])
    rows = []
    for way in WAYS:
        median = statistics.median(timings[way])
        best = min(timings[way])
        cpu_median = statistics.median(cpu[way])
        rows.append(
            (
                way, f"{median:.0f}", f"{median / bare:.2f}x", f"{median - bare:+.0f}", f"{best:.0f}",
                f"{cpu_median:.0f}", f"{cpu_median - bare_cpu:+.0f}",
            )
        )  # fmt: skip
    header = ("way", "median ms", "vs bare", "added ms", "best ms", "CPU ms", "added CPU ms")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|---:|---:|---:|---:|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = []
    for row in (header, *rows):
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each way (default 15)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as folder:
        bench = Bench(Path(folder))
        bench.setup()
        timings, cpu = measure(bench, options.repeat)
        costs = sealing_costs(bench, max(3, options.repeat // 5))
    uv_version = subprocess.run([bench.uv, "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"{options.repeat} runs each, interleaved; Python {platform.python_version()}, {uv_version}, "
        f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()}"
    )
    print(report(timings, cpu, options.markdown))
    cached = statistics.median(timings[WAYS[2]]) - statistics.median(timings[WAYS[0]])
    plain = statistics.median(timings[WAYS[1]]) - statistics.median(timings[WAYS[0]])
    verdict = "met" if max(cached, plain) < 100 else "NOT met"
    print(f"goal (< 100 ms added for no requirements and for a cached overlay, median wall clock): {verdict}")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(
            f"note: load average {load:.1f} on {os.cpu_count()} CPUs during the run; wall-clock figures are stretched"
        )
    print("sealing, on the ~100 MB overlay:")
    for what, value, unit in costs:
        print(f"  {what}: {value:.0f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
