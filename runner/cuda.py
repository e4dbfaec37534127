"""The duplicate-CUDA guard: refuse pip CUDA runtime wheels on top of a base whose CUDA comes from conda.

A flavor's CUDA user-space libraries (cudnn, cublas, nccl, …) are conda packages from
the lock. The same libraries as pip wheels (`nvidia-*-cu12`, pulled by a PyPI `torch`
or `tensorflow[and-cuda]`) add gigabytes and load a second copy next to the first,
which is how ML images grow to 15-19 GB and then fail at import.
"""

from __future__ import annotations

import re

from runner.base import BaseEnvironment, CondaPackage
from runner.requirements import Requirement, canonical_name

# The part of an `nvidia-<part>-cu<N>` wheel name → conda-forge packages that ship the same library.
WHEEL_TO_CONDA: dict[str, tuple[str, ...]] = {
    "cuda-runtime": ("cuda-cudart", "cuda-runtime"),
    "cudnn": ("cudnn",),
    "cublas": ("libcublas",),
    "cufft": ("libcufft",),
    "curand": ("libcurand",),
    "cusolver": ("libcusolver",),
    "cusparse": ("libcusparse",),
    "cusparselt": ("libcusparselt", "cusparselt"),
    "nccl": ("nccl",),
    "nvjitlink": ("libnvjitlink",),
    "nvtx": ("cuda-nvtx",),
    "cuda-nvrtc": ("cuda-nvrtc",),
    "cuda-cupti": ("cuda-cupti",),
    "cuda-nvcc": ("cuda-nvcc",),
    "cufile": ("libcufile",),
    "nvshmem": ("libnvshmem", "nvshmem"),
}
# Conda packages whose presence means "this base takes CUDA from conda".
CUDA_MARKERS = (
    "cuda-version",
    "cudnn",
    "cuda-cudart",
    "libcublas",
    "nccl",
    "cuda-runtime",
    "cudatoolkit",
)
# ML frameworks whose conda build string says whether they are the CUDA variant.
CUDA_BUILT_FRAMEWORKS = ("pytorch", "tensorflow", "tensorflow-base", "jaxlib")
_NVIDIA_WHEEL = re.compile(r"^nvidia-(?P<part>.+?)-cu(?P<major>\d+)$")
# PyPI wheels that bundle or pull CUDA: name → (extras that pull it, or () for "the name itself").
_CUDA_EXTRAS = {"tensorflow": ("and-cuda",), "jax": ("cuda", "cuda11", "cuda12", "cuda13", "cuda12-local")}

GUARD_FIX = (
    "remove it from requirements.txt: this flavor already ships CUDA from conda-forge; "
    "or set RUNNER_OVERLAY_POLICY=override to install it anyway"
)


class Duplicate:
    __slots__ = ("duplicates", "version", "via", "wheel")

    def __init__(self, wheel: str, version: str, duplicates: str, via: str = "") -> None:
        self.wheel = wheel
        self.version = version
        self.duplicates = duplicates
        self.via = via

    def describe(self) -> str:
        text = f"{self.wheel} {self.version}".strip()
        if self.via:
            text += f" (needed by {self.via})"
        return f"{text} duplicates {self.duplicates}"


def conda_cuda(base: BaseEnvironment) -> list[CondaPackage]:
    """The conda packages that provide CUDA in the base (empty: CUDA does not come from conda)."""
    packages = base.conda_packages
    found = [packages[name] for name in CUDA_MARKERS if name in packages]
    found += [
        packages[name] for name in CUDA_BUILT_FRAMEWORKS if name in packages and "cuda" in packages[name].build.lower()
    ]
    return found


def _describe(package: CondaPackage) -> str:
    return f"{package.name} {package.version} from the flavor's conda environment"


def duplicate_of(name: str, version: str, base: BaseEnvironment) -> str | None:
    """What base package a would-be installed wheel duplicates, or None if it is harmless."""
    cuda = conda_cuda(base)
    if not cuda:
        return None
    packages = base.conda_packages
    key = canonical_name(name)
    match = _NVIDIA_WHEEL.match(key)
    if match:
        for conda_name in WHEEL_TO_CONDA.get(match["part"], ()):
            if conda_name in packages:
                return _describe(packages[conda_name])
        return _describe(cuda[0])
    local = version.partition("+")[2].lower()
    if key == "torch" and local.startswith("cu"):
        return _describe(packages.get("pytorch") or cuda[0])
    if key in ("jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin", "jax-cuda13-pjrt"):
        return _describe(packages.get("jaxlib") or cuda[0])
    return None


def requested_duplicates(requirements: list[Requirement], base: BaseEnvironment) -> list[Duplicate]:
    """Requirements that ask for CUDA by name before anything is resolved (`tensorflow[and-cuda]`, `torch==…+cu124`)."""
    if not conda_cuda(base):
        return []
    found = []
    for requirement in requirements:
        extras = {canonical_name(e) for e in requirement.extras}
        cuda_extras = extras & set(_CUDA_EXTRAS.get(requirement.key, ()))
        if cuda_extras:
            target = base.conda_packages.get(requirement.key) or conda_cuda(base)[0]
            found.append(Duplicate(str(requirement), "", _describe(target)))
            continue
        pins = list(requirement.specifier)
        version = pins[0].version if len(pins) == 1 and pins[0].operator == "==" else ""
        duplicate = duplicate_of(requirement.name, version, base)
        if duplicate:
            found.append(Duplicate(str(requirement), "", duplicate))
    return found
