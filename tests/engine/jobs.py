"""The user code the engine tests run, and how they read back what it saw.

`REPORTING_SCRIPT` prints four progress lines (1/4, 50%, 0.75, 100%: the only lines of the
log that may read as progress), and writes what it saw from inside the container (its
identity, PID 1, the environment, the flavor's library) to OUTPUT_1/report.json, which
comes back in output_1.zip as any result does.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

SCRIPT_PROGRESS = [0.25, 0.5, 0.75, 1.0]

REPORTING_SCRIPT = """\
import json
import os
import sys

import fixture_lib

print("[PROGRESS] 1/4", flush=True)
report = {
    "uid": os.getuid(),
    "euid": os.geteuid(),
    "gid": os.getgid(),
    "groups": os.getgroups(),
    "pid": os.getpid(),
    "pid1": open("/proc/1/comm").read().strip(),
    "env": dict(os.environ),
    "fixture_lib": fixture_lib.VERSION,
    "prefix": sys.prefix,
    "inputs": sorted(os.listdir(os.environ["INPUT_FOLDER"])),
    "values": json.load(open(os.path.join(os.environ["INPUT_FOLDER"], "inputs.json"))),
}
print("50%", flush=True)
with open(os.path.join(os.environ["OUTPUT_1"], "report.json"), "w") as handle:
    json.dump(report, handle)
print("[PROGRESS] 0.75", flush=True)
with open(os.path.join(os.environ["OUTPUT_2"], "numbers.txt"), "w") as handle:
    handle.write(open(os.path.join(os.environ["INPUT_FOLDER"], "numbers.txt")).read())
print("100%", flush=True)
"""

FAILING_SCRIPT = """\
import os
with open(os.path.join(os.environ["OUTPUT_1"], "partial.txt"), "w") as handle:
    handle.write("written before the failure\\n")
raise RuntimeError("the user's script failed on purpose")
"""

OVERLAY_SCRIPT = """\
import os
import slowpkg
with open(os.path.join(os.environ["OUTPUT_1"], "slowpkg.txt"), "w") as handle:
    handle.write(slowpkg.VALUE)
print("imported slowpkg:", slowpkg.VALUE)
"""


def reporting_job_files() -> dict[str, str | bytes]:
    """Flat inputs, as the backend stages file ports: the script and a data file straight in /inputs."""
    return {"main.py": REPORTING_SCRIPT, "numbers.txt": "1\n2\n3\n"}


def read_zip_member(archive: Path, name: str) -> bytes:
    with zipfile.ZipFile(archive) as bundle:
        return bundle.read(name)


def report_of(outputs: Path) -> dict[str, Any]:
    """What the reporting script saw, read from output_1.zip as oSPARC would upload it."""
    document = json.loads(read_zip_member(outputs / "output_1.zip", "report.json"))
    assert isinstance(document, dict)
    return document
