"""oSPARC's computational backend starting a service, re-enacted with podman.

What the backend does is read from osparc-simcore, services/dask-sidecar,
`computational_sidecar/docker_utils.py` (create_container_config, the log parsing),
`core.py` (the run) and `models.py` (the host config), and from servicelib's
`logging_utils.guess_message_log_level`; design.md sums it up. Here, as there:
- the image's own ENTRYPOINT, command `run`, no user, no working dir, no network settings;
- Init, NanoCPUs as --cpus, Memory = MemorySwap;
- env INPUT_FOLDER=/inputs, OUTPUT_FOLDER=/outputs, LOG_FOLDER=/logs,
  SC_COMP_SERVICES_SCHEDULED_AS, SIMCORE_NANO_CPUS_LIMIT, SIMCORE_MEMORY_BYTES_LIMIT, then
  the service settings' env entries;
- read-write binds of /inputs, /outputs, /logs, owned by the backend's user (8004);
- create, start, wait until it stops, read the container log line by line; each line is
  searched with the progress expression below (unless the image's io.simcore.progress_regexp
  label gives another) and given a log level by its first word.
The log is read without podman's timestamps: the backend strips docker's before parsing,
and podman, unlike docker, stamps each partial write rather than each line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.engine.podman import Podman

# The backend's default progress expression (docker_utils / models: ImageLabels.get_progress_regexp).
PROGRESS_REGEXP = (
    r"^(?:\[?PROGRESS\]?:?)?\s*(?P<value>[0-1]?\.\d+|\d+\s*(?:(?P<percent_sign>%)|\d+\s*(?P<percent_explicit>percent))"
    r"|\[?(?P<fraction>\d+\/\d+)\]?|0|1)"
)
ERROR_STARTS = ("error", "[error]", "err", "[err]", "exception", "[exception]", "exc:", "exc ", "[exc]")
WARNING_STARTS = ("warning", "[warning]", "warn", "[warn]")
BACKEND_UID = 8004


def progress_value(line: str, expression: str = PROGRESS_REGEXP) -> float | None:
    """The progress the backend reads from one log line (a leading timestamp word is dropped first), or None."""
    words = line.split(" ", 1)
    if len(words) == 2:
        try:
            datetime.fromisoformat(words[0].replace("Z", "+00:00"))
            line = words[1]
        except ValueError:
            pass
    match = re.search(expression, line)
    if match is None:
        return None
    value = match.group("value")
    if match.group("percent_sign"):
        return float(value.split("%")[0].strip()) / 100
    if match.group("percent_explicit"):
        return float(value.split("percent")[0].strip()) / 100
    if match.group("fraction"):
        done, total = match.group("fraction").split("/")
        return float(done) / float(total)
    return float(value)


def log_level(line: str) -> str:
    lowered = line.lower().strip()
    if lowered.startswith(ERROR_STARTS):
        return "error"
    if lowered.startswith(WARNING_STARTS):
        return "warning"
    return "info"


@dataclass
class Job:
    """The backend's per-run folder: inputs/, outputs/, logs/, all owned by `owner`."""

    root: Path
    owner: tuple[int, int] = (BACKEND_UID, BACKEND_UID)

    def __post_init__(self) -> None:
        for folder in (self.inputs, self.outputs, self.logs):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def stage(self, files: dict[str, str | bytes], values: dict[str, object] | None = None) -> None:
        """Inputs as the backend stages them: each file port by its name in /inputs, values in inputs.json."""
        for name, content in files.items():
            path = self.inputs / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        (self.inputs / "inputs.json").write_text(json.dumps(values or {}))
        self.give_to_owner()

    def give_to_owner(self) -> None:
        for path in [self.root, *self.root.rglob("*")]:
            os.lchown(path, *self.owner)


@dataclass
class Run:
    code: int
    lines: list[str]
    expression: str = PROGRESS_REGEXP
    name: str = ""

    @property
    def progress(self) -> list[tuple[str, float]]:
        """Every line the backend reads a progress value from, with the value."""
        found = []
        for line in self.lines:
            value = progress_value(line, self.expression)
            if value is not None:
                found.append((line, value))
        return found

    def at_level(self, level: str) -> list[str]:
        return [line for line in self.lines if log_level(line) == level]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Backend:
    """Starts `image` as the backend does, with `settings_env` as the service settings' env entries."""

    podman: Podman
    image: str
    settings_env: dict[str, str] = field(default_factory=dict)

    def progress_expression(self) -> str:
        labels = self.podman.inspect(self.image).get("Labels") or {}
        assert isinstance(labels, dict)
        label = labels.get("io.simcore.progress_regexp")
        return json.loads(label)["progress_regexp"] if label else PROGRESS_REGEXP

    def create(
        self,
        job: Job,
        name: str,
        *,
        nano_cpus: int = 1_000_000_000,
        memory: int = 1 << 30,
        scheduled_as: str = "CPU",
        binds: list[tuple[Path, str]] | None = None,
    ) -> str:
        env = {
            "INPUT_FOLDER": "/inputs",
            "OUTPUT_FOLDER": "/outputs",
            "LOG_FOLDER": "/logs",
            "SC_COMP_SERVICES_SCHEDULED_AS": scheduled_as,
            "SIMCORE_NANO_CPUS_LIMIT": str(nano_cpus),
            "SIMCORE_MEMORY_BYTES_LIMIT": str(memory),
            **self.settings_env,
        }
        mounts = [(job.inputs, "/inputs"), (job.outputs, "/outputs"), (job.logs, "/logs"), *(binds or [])]
        self.podman.run(
            "create", "--name", name, "--init",
            "--cpus", f"{nano_cpus / 1e9:g}", "--memory", str(memory), "--memory-swap", str(memory),
            *(f"--env={key}={value}" for key, value in env.items()),
            *(f"--volume={source}:{target}" for source, target in mounts),
            self.image, "run",
        )  # fmt: skip
        return name

    def finish(self, name: str, timeout: float = 600) -> Run:
        """Wait for the container to stop, read its log as the backend does, remove it."""
        try:
            code = int(self.podman.run("wait", name, timeout=timeout).stdout.strip())
            return Run(code, merged_log(self.podman, name), self.progress_expression(), name)
        finally:
            self.podman.run("rm", "--force", name, check=False)

    def run(self, job: Job, name: str, **options: object) -> Run:
        self.create(job, name, **options)  # type: ignore[arg-type]
        self.podman.run("start", name)
        return self.finish(name)

    def start_and_kill_when(self, job: Job, name: str, marker: Path, timeout: float = 300, **options: object) -> Run:
        """Start, wait for `marker` (written by the job mid-work), then SIGKILL it: the backend's cancel."""
        self.create(job, name, **options)  # type: ignore[arg-type]
        self.podman.run("start", name)
        deadline = time.monotonic() + timeout
        while not marker.exists():
            state = self.podman.run("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                run = self.finish(name)
                raise AssertionError(f"{marker} never appeared (exit {run.code}):\n{run.text}")
            time.sleep(0.2)
        self.podman.run("kill", "--signal", "KILL", name)
        return self.finish(name)


def merged_log(podman: Podman, name: str) -> list[str]:
    """stdout and stderr of the container in the order written (podman logs prints them on its own two streams)."""
    command = ["podman", "logs", name]
    done = subprocess.run(
        command, env=podman.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True
    )
    return done.stdout.splitlines()
