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
  searched with the backend's progress expression and given a log level by its first word
  (tests/support/backend.py; our images set no io.simcore.progress_regexp label).
The log is read without podman's timestamps: the backend strips docker's before parsing,
and podman, unlike docker, stamps each partial write rather than each line.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.engine.podman import Podman
from tests.support.backend import log_level_of, may_read_as_progress, progress_of

BACKEND_UID = 8004


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
    name: str = ""

    @property
    def progress(self) -> list[tuple[str, float | None]]:
        """Every line the backend may read a progress value from, with the value it reads from the whole line."""
        return [(line, progress_of(line)) for line in self.lines if may_read_as_progress(line)]

    def at_level(self, level: str) -> list[str]:
        """The lines the backend logs at `level` (ERROR, WARNING, INFO)."""
        return [line for line in self.lines if log_level_of(line) == level.upper()]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Backend:
    """Starts `image` as the backend does, with `settings_env` as the service settings' env entries."""

    podman: Podman
    image: str
    settings_env: dict[str, str] = field(default_factory=dict)

    def create(
        self,
        job: Job,
        name: str,
        *,
        nano_cpus: int = 1_000_000_000,
        memory: int = 1 << 30,
        scheduled_as: str = "CPU",
        binds: Sequence[tuple[Path | str, str]] = (),  # a host folder, or a volume's name
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
        mounts: list[tuple[Path | str, str]] = [(job.inputs, "/inputs"), (job.outputs, "/outputs"), (job.logs, "/logs")]
        mounts += binds
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
            return Run(code, merged_log(self.podman, name), name)
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
