"""CUDA facts as data: the driver each toolkit needs, and how to tell a CPU variant build.

Minimum Linux x86_64 driver versions are from NVIDIA's CUDA Toolkit Release Notes,
"Table 3: CUDA Toolkit and Corresponding Driver Versions" (toolkit GA releases), and
"CUDA Minor Version Compatibility" for the lowest driver a whole major series runs on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

# CUDA major.minor -> minimum driver for that toolkit release (Linux x86_64).
TOOLKIT_MINIMUM_DRIVER: dict[str, str] = {
    "11.0": "450.36.06",
    "11.1": "455.23",
    "11.2": "460.27.03",
    "11.3": "465.19.01",
    "11.4": "470.42.01",
    "11.5": "495.29.05",
    "11.6": "510.39.01",
    "11.7": "515.43.04",
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}

# CUDA major -> lowest driver that runs any minor release of it (minor version compatibility;
# PTX JIT and some features still need the toolkit's own driver above).
MINOR_COMPATIBILITY_DRIVER: dict[str, str] = {
    "11": "450.80.02",
    "12": "525.60.13",
    "13": "580.65.06",
}


@dataclass(frozen=True)
class DriverRequirement:
    cuda: str
    toolkit_driver: str | None
    compatible_driver: str | None


def major_minor(version: str) -> str:
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else f"{parts[0]}.0"


def driver_requirement(cuda_version: str) -> DriverRequirement:
    key = major_minor(cuda_version)
    return DriverRequirement(
        cuda=key,
        toolkit_driver=TOOLKIT_MINIMUM_DRIVER.get(key),
        compatible_driver=MINOR_COMPATIBILITY_DRIVER.get(key.split(".")[0]),
    )


def driver_satisfies(driver: str, minimum: str) -> bool:
    try:
        return Version(driver) >= Version(minimum)
    except InvalidVersion:
        return False


def is_cpu_variant(build: str, track_features: list[str] | tuple[str, ...] = ()) -> bool:
    """conda-forge marks the CPU variant of a GPU package by its build string (`cpu_mkl_…`) or a `*-cpu` feature."""
    lowered = build.lower()
    if lowered == "cpu" or lowered.startswith("cpu_") or "_cpu_" in lowered:
        return True
    return any(feature.endswith("-cpu") or feature == "cpu" for feature in track_features)


def cuda_for_driver(driver: str) -> str | None:
    """The newest CUDA major.minor whose toolkit release runs on `driver` (None if older than all of them)."""
    newest: str | None = None
    for cuda, minimum in TOOLKIT_MINIMUM_DRIVER.items():
        if driver_satisfies(driver, minimum) and (newest is None or _cuda_key(cuda) > _cuda_key(newest)):
            newest = cuda
    return newest


def _cuda_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# The PyPI CUDA runtime wheels (`nvidia-<library>-cu<major>`, as torch and tensorflow wheels pull
# them in) → the conda-forge packages that ship the same libraries. Names from the wheels on PyPI
# (publisher NVIDIA) and the conda-forge feedstocks of the CUDA components.
CUDA_WHEEL_CONDA_PACKAGES: dict[str, tuple[str, ...]] = {
    "cublas": ("libcublas",),
    "cuda-cupti": ("cuda-cupti",),
    "cuda-nvcc": ("cuda-nvcc", "cuda-nvcc-tools"),
    "cuda-nvrtc": ("cuda-nvrtc",),
    "cuda-runtime": ("cuda-cudart", "cuda-runtime"),
    "cudnn": ("cudnn", "libcudnn"),
    "cudss": ("libcudss",),
    "cufft": ("libcufft",),
    "cufile": ("libcufile",),
    "curand": ("libcurand",),
    "cusolver": ("libcusolver",),
    "cusparse": ("libcusparse",),
    "cusparselt": ("cusparselt", "libcusparselt"),
    "nccl": ("nccl",),
    "nvjitlink": ("libnvjitlink",),
    "nvshmem": ("nvshmem", "libnvshmem"),
    "nvtx": ("cuda-nvtx",),
}

# Conda packages whose presence means a prefix takes its CUDA user-space libraries from conda
# (then any CUDA runtime wheel over it is a second stack, whether or not it repeats one library).
CONDA_CUDA_MARKERS = ("cuda-version", "cudnn", "cuda-cudart", "libcublas", "nccl", "cuda-runtime", "cudatoolkit")

_CUDA_WHEEL = re.compile(r"^nvidia-(?P<library>[a-z0-9-]+?)-cu(?P<major>\d+)$")


def cuda_wheel_library(distribution: str) -> tuple[str, str] | None:
    """`nvidia-cudnn-cu12` (any spelling) → ("cudnn", "12"); None for anything that is not a CUDA runtime wheel."""
    normalized = re.sub(r"[-_.]+", "-", distribution).lower()
    match = _CUDA_WHEEL.match(normalized)
    return (match.group("library"), match.group("major")) if match else None


def conda_packages_for_cuda_wheel(library: str) -> tuple[str, ...]:
    """The conda packages a CUDA wheel's library duplicates (a guess by name when it is not in the table)."""
    return CUDA_WHEEL_CONDA_PACKAGES.get(library, (library, f"lib{library}", f"cuda-{library}"))
