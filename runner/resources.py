"""The job's resources as oSPARC's backend states them, and what the runner does with each.

- `SIMCORE_NANO_CPUS_LIMIT` (the container's CPU quota, in 1e-9 CPUs): the thread counts of
  OpenMP, MKL, OpenBLAS, BLIS, numexpr, PyTorch (which follows OMP/MKL) and TensorFlow
  follow it, rounded up to whole CPUs. Otherwise each library starts one thread per core
  of the *host*, and a 2-CPU job on a 64-core node thrashes. A variable the caller set
  (oSPARC's service settings, the shell) wins.
- `SIMCORE_MEMORY_BYTES_LIMIT`: recorded, and named when the script is killed.
- `SC_COMP_SERVICES_SCHEDULED_AS=GPU` with no NVIDIA device in /dev: one warning line
  before the script starts (the backend sends no device request: the host's NVIDIA
  runtime gives the GPU only to images whose environment sets NVIDIA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
NANO = 1_000_000_000
DEVICES = Path("/dev")


class Resources:
    __slots__ = ("cpus", "kept", "memory_bytes", "scheduled_as", "threads")

    def __init__(self, scheduled_as: str | None, cpus: float | None, memory_bytes: int | None) -> None:
        self.scheduled_as = scheduled_as
        self.cpus = cpus
        self.memory_bytes = memory_bytes
        self.threads: dict[str, str] = {}  # what the runner set
        self.kept: dict[str, str] = {}  # what the caller had set already

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Resources:
        nano = _integer(environ, "SIMCORE_NANO_CPUS_LIMIT")
        return cls(
            (environ.get("SC_COMP_SERVICES_SCHEDULED_AS") or "").strip().upper() or None,
            nano / NANO if nano else None,
            _integer(environ, "SIMCORE_MEMORY_BYTES_LIMIT"),
        )

    @property
    def thread_count(self) -> int | None:
        if self.cpus is None:
            return None
        return max(1, -int(-self.cpus // 1))  # a 1.5-CPU quota still runs two threads part of the time

    def apply(self, child_env: dict[str, str]) -> None:
        """Set the thread variables the caller left unset, from the CPU limit, and say what the limits are."""
        count = self.thread_count
        if count is not None:
            for name in THREAD_VARIABLES:
                if child_env.get(name):
                    self.kept[name] = child_env[name]
                else:
                    child_env[name] = self.threads[name] = str(count)
        limits = []
        if self.cpus is not None:
            limits.append(f"{self.cpus:g} CPU{'' if self.cpus == 1 else 's'} (SIMCORE_NANO_CPUS_LIMIT)")
        if self.memory_bytes is not None:
            limits.append(f"{human_bytes(self.memory_bytes)} of memory (SIMCORE_MEMORY_BYTES_LIMIT)")
        if not limits:
            return
        threads = ""
        if self.threads:
            threads = f": {count} thread{'' if count == 1 else 's'} for OpenMP, MKL, OpenBLAS, BLIS, numexpr, TF"
        kept = f"; as given: {', '.join(f'{k}={v}' for k, v in self.kept.items())}" if self.kept else ""
        log.info("limits: %s%s%s", ", ".join(limits), threads, kept)

    def check_gpu(self, environ: Mapping[str, str], devices: Path = DEVICES) -> None:
        if self.scheduled_as != "GPU" or nvidia_devices(devices):
            return
        visible = environ.get("NVIDIA_VISIBLE_DEVICES")
        log.warning(
            "scheduled as a GPU job (SC_COMP_SERVICES_SCHEDULED_AS=GPU) but no NVIDIA device is visible in %s "
            "(NVIDIA_VISIBLE_DEVICES=%s): the script runs without a GPU (the image must set "
            "NVIDIA_VISIBLE_DEVICES=all and the host run the NVIDIA container runtime)",
            devices,
            visible if visible is not None else "unset",
        )

    def summary(self) -> dict[str, object]:
        return {
            "scheduled_as": self.scheduled_as,
            "cpus": self.cpus,
            "memory_bytes": self.memory_bytes,
            "threads": self.threads,
            "threads_kept": self.kept,
        }


def nvidia_devices(devices: Path = DEVICES) -> list[str]:
    """The GPU device nodes the NVIDIA runtime put in the container: nvidia0, nvidia1, …"""
    try:
        names = os.listdir(devices)
    except OSError:
        return []
    return sorted(name for name in names if name.startswith("nvidia") and name[6:].isdigit())


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _integer(environ: Mapping[str, str], name: str) -> int | None:
    text = (environ.get(name) or "").strip()
    if not text:
        return None
    try:
        value = int(float(text))
    except ValueError:
        log.warning("%s=%r is not a number: ignored", name, text)
        return None
    return value if value > 0 else None
