"""Benchmark: what the runner adds to a bare `python script.py`, side by side on this machine.

    python bench/runner.py [--repeat N] [--markdown]

Five ways of running the same small script, interleaved N times so that machine noise
hits them alike, with the same base environment (a venv with one package, standing in
for the flavor's environment):

1. bare `python script.py`;
2. the runner, no requirements.txt;
3. the runner, requirements.txt with a cached overlay;
4. the runner, requirements.txt with a cold overlay (empty overlay cache, warm uv cache);
5. the public runner's way: `uv pip install -r requirements.txt` into the environment on
   every run (each run starts from an environment without the package, as a fresh
   container does), then `python script.py`;
6. for information: the runner started as `python -S -m runner` (it needs no site-packages
   of its own), which an image's run script may use.

The runner's bytecode is compiled first (runner/__pycache__, ignored by git), as an
image should ship it. Offline: the wheels are written by hand (tests/runner/wheels.py) and served with
UV_FIND_LINKS; nothing is downloaded. Prints medians, ratios and the time added to bare.
"""

from __future__ import annotations

import argparse
import os
import platform
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

from tests.runner.wheels import FakeWheel, build_wheel  # noqa: E402

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
    "runner, cold overlay",
    "public way: uv pip install + run",
    "runner -S, no requirements",
)


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
        self.env.update(
            {
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
        self.quiet([self.uv, "venv", str(self.base), "--python", sys.executable, "--quiet"])
        self.quiet([self.uv, "pip", "install", "--python", str(self.python), "benchbase==1.0", "--quiet"])
        # The runner's bytecode, as an image should ship it (PYTHONDONTWRITEBYTECODE would otherwise
        # make every run compile the runner from source).
        self.quiet([str(self.python), "-m", "compileall", "-q", "-x", "/examples/", str(REPO / "runner")])
        for name, requirements in (("plain", None), ("reqs", "benchpkg\n")):
            code = self.root / name / "input" / "input_1"
            code.mkdir(parents=True)
            (code / "script.py").write_text(SCRIPT)
            if requirements:
                (code / "requirements.txt").write_text(requirements)
        # Warm what every way shares: uv's cache and the cached overlay.
        self.cached_overlay()
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


def measure(bench: Bench, repeat: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {way: [] for way in WAYS}
    ways = (
        bench.bare,
        bench.no_requirements,
        bench.cached_overlay,
        bench.cold_overlay,
        bench.public_way,
        bench.no_requirements_without_site,
    )
    actions: dict[str, Callable[[], None]] = dict(zip(WAYS, ways, strict=True))
    for _ in range(repeat):
        bench.reset_public_way()
        for way, action in actions.items():
            started = time.perf_counter()
            action()
            timings[way].append((time.perf_counter() - started) * 1000)
    return timings


def report(timings: dict[str, list[float]], markdown: bool) -> str:
    bare = statistics.median(timings[WAYS[0]])
    rows = []
    for way in WAYS:
        median = statistics.median(timings[way])
        best = min(timings[way])
        rows.append((way, f"{median:.0f}", f"{median / bare:.2f}x", f"{median - bare:+.0f}", f"{best:.0f}"))
    header = ("way", "median ms", "vs bare", "added ms", "best ms")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|---:|---:|"]
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
        timings = measure(bench, options.repeat)
    uv_version = subprocess.run([bench.uv, "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"{options.repeat} runs each, interleaved; Python {platform.python_version()}, {uv_version}, "
        f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()}"
    )
    print(report(timings, options.markdown))
    cached = statistics.median(timings[WAYS[2]]) - statistics.median(timings[WAYS[0]])
    plain = statistics.median(timings[WAYS[1]]) - statistics.median(timings[WAYS[0]])
    verdict = "met" if max(cached, plain) < 100 else "NOT met"
    print(f"goal (< 100 ms added for no requirements and for a cached overlay): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
