"""Running the engine commands of a build: a progress display on stderr, every line in a log file.

The log file holds each command and everything the engine printed, so a failed build can be
read afterwards; the last lines are shown on failure.

A docker without the buildx plugin (Debian's docker.io without docker-buildx, or podman-docker)
builds with its legacy builder: `docker_has_buildx` tells, and the build then runs with
DOCKER_BUILDKIT=0 (docker >= 23 refuses to build when BuildKit is asked for and buildx is missing).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from cli.errors import UserError
from cli.images.plan import as_text

log = logging.getLogger(__name__)

LOG_DIR = Path("build/logs")
TAIL_LINES = 20


LEGACY_BUILDER_ENV = {"DOCKER_BUILDKIT": "0"}
BUILDX_HINT = "for BuildKit, install the buildx plugin: apt install docker-buildx on Debian/Ubuntu"


@dataclass(frozen=True)
class Job:
    title: str
    command: list[str]
    env: dict[str, str] | None = None  # added to this process's environment


class BuildFailed(UserError):
    exit_code = 1

    def __init__(self, job: Job, code: int, log_path: Path, tail: list[str]) -> None:
        self.details = "\n".join(tail)
        super().__init__(
            f"{job.title} failed (exit {code}): {as_text(job.command)[:200]}",
            path=log_path,
            fix="read the build log named here",
        )


def log_path_for(root: Path, target: str, log_dir: Path | None = None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = log_dir if log_dir is not None else root / LOG_DIR
    return folder / f"build-{target}-{stamp}.log"


def require_engine(engine: str) -> None:
    if shutil.which(engine) is None:
        raise UserError(f"'{engine}' is not on PATH", fix="install it, or choose the other one with --engine")


def docker_has_buildx(docker: str = "docker") -> bool:
    """Whether `docker buildx` works (BuildKit); False for a docker with only the legacy builder."""
    try:
        done = subprocess.run([docker, "buildx", "version"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def run_jobs(jobs: list[Job], log_path: Path, cwd: Path, console: Console | None = None) -> None:
    """Run `jobs` in order, stopping at the first failure (raised as BuildFailed naming the log)."""
    console = console or Console(stderr=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        log_path.open("w", encoding="utf-8") as log_file,
        Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[title]}[/bold]"),
            TextColumn("{task.description}", style="dim"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress,
    ):
        for job in jobs:
            task = progress.add_task("", title=job.title, total=1)
            log_file.write(f"$ {as_text(job.command)}\n")
            log_file.flush()
            tail: deque[str] = deque(maxlen=TAIL_LINES)
            process = subprocess.Popen(
                job.command,
                cwd=cwd,
                env={**os.environ, **job.env} if job.env else None,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            assert process.stdout is not None
            for line in process.stdout:
                log_file.write(line)
                stripped = line.rstrip()
                if stripped:
                    tail.append(stripped)
                    progress.update(task, description=stripped[-80:])
            code = process.wait()
            log_file.write(f"# exit {code}\n")
            log_file.flush()
            if code != 0:
                progress.update(task, description="[red]failed[/red]")
                raise BuildFailed(job, code, log_path, list(tail))
            progress.update(task, description="[green]done[/green]", completed=1)
    log.info("build log: %s", log_path)
