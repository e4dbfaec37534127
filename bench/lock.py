"""Time a lock of both flavors on the conda-forge subset in tests/data/channels (cold and warm).

cold: a fresh process, no previous pixi.lock (full solve, repodata read from disk);
warm: in one process, re-locking with the previous lock as preferences (an unchanged lock is re-solved the same).

    python bench/lock.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT / "tests" / "data" / "channels" / "conda-forge"
MIRROR = f"conda-forge={SUBSET.as_uri()}"
ARGS = ["lock", "-e", "pytorch", "-e", "tensorflow", "--mirror", MIRROR]


def workspace_copy(target: Path) -> Path:
    target.mkdir()
    shutil.copy(ROOT / "pixi.toml", target / "pixi.toml")
    shutil.copytree(ROOT / "flavors", target / "flavors")
    return target


def cold(repeat: int) -> list[float]:
    times = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as folder:
            ws = workspace_copy(Path(folder) / f"ws{i}")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cli", *ARGS], cwd=ws, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return times


def warm(repeat: int) -> list[float]:
    sys.path.insert(0, str(ROOT))
    from cli.lockengine.channels import parse_mirrors
    from cli.lockengine.locking import LockRequest, lock_workspace, write_result
    from cli.lockengine.manifest import load_workspace

    times = []
    with tempfile.TemporaryDirectory() as folder:
        ws = workspace_copy(Path(folder) / "ws")
        request = LockRequest(environments=("pytorch", "tensorflow"), mirrors=parse_mirrors([MIRROR]))
        write_result(lock_workspace(load_workspace(ws), request))
        for _ in range(repeat):
            start = time.perf_counter()
            result = lock_workspace(load_workspace(ws), request)
            times.append(time.perf_counter() - start)
            assert not result.changed
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    rows = [("cold (new process, no lock)", cold(repeat)), ("warm (in process, relock)", warm(repeat))]
    print(f"lock of pytorch + tensorflow (linux-64) on {SUBSET.relative_to(ROOT)}, {repeat} runs each")
    print(f"{'case':32} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, times in rows:
        print(f"{name:32} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from cli.process_exit import run_then_exit

    run_then_exit(main)  # py-rattler ran in this process: see cli/process_exit.py
