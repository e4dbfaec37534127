"""The CUDA needs of a flavor, read from its lock, and whether a given driver runs it.

Needs come from the locked records: the `cuda-version` package (the CUDA release the stack
was built for), every `__cuda` dependency or constraint, and the `__cuda` virtual package the
lock platform assumed. The driver each CUDA release needs is `cli.cuda`'s table (NVIDIA's
release notes). A CUDA flavor whose lock holds a CPU variant build is a finding: the silent
fallback this project exists to prevent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion
from packaging.version import Version as PyVersion
from rattler import LockFile, Version, VersionSpec
from rattler.exceptions import InvalidVersionError, InvalidVersionSpecError

from cli.audit.findings import Finding
from cli.audit.readers import LockedPackage, from_record
from cli.cuda import DriverRequirement, cuda_for_driver, driver_requirement, driver_satisfies, is_cpu_variant
from cli.errors import UserError
from cli.lockengine.lockfile import find_platform, locked_records, read_lock
from cli.lockengine.manifest import Workspace

CUDA_VERSION_PACKAGE = "cuda-version"
CUDA_VIRTUAL = "__cuda"
# conda-forge packages of the CUDA user-space stack, listed to show what the image carries.
CUDA_LIBRARY = re.compile(
    r"^(cuda-|cudnn|nccl|cutensor|cusparselt|nvshmem|libnpp|libcu(blas|dnn|dss|fft|file|rand|solver|sparse|tensor|pti)"
    r"|libnv(jitlink|jpeg|rtc|shmem|toolsext|vjpeg|ptxcompiler))"
)


@dataclass(frozen=True, order=True)
class CudaConstraint:
    package: str
    spec: str
    source: str  # "depends", "constrains" or "virtual-packages"

    def as_dict(self) -> dict[str, str]:
        return {"package": self.package, "spec": self.spec, "source": self.source}


@dataclass
class PlatformCuda:
    platform: str
    declared: str | None
    cuda_version: str | None
    constraints: list[CudaConstraint] = field(default_factory=list)
    libraries: list[LockedPackage] = field(default_factory=list)
    cpu_variants: list[LockedPackage] = field(default_factory=list)
    requirement: DriverRequirement | None = None
    driver_cuda: str | None = None
    unmet: list[CudaConstraint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def uses_cuda(self) -> bool:
        return bool(self.declared or self.cuda_version or self.constraints)

    @property
    def minimum_cuda(self) -> str | None:
        return self.requirement.cuda if self.requirement else None

    def as_dict(self) -> dict[str, Any]:
        requirement = self.requirement
        return {
            "platform": self.platform,
            "uses_cuda": self.uses_cuda,
            "declared_cuda": self.declared,
            "cuda_version_package": self.cuda_version,
            "minimum_cuda": self.minimum_cuda,
            "minimum_driver": requirement.compatible_driver if requirement else None,
            "toolkit_driver": requirement.toolkit_driver if requirement else None,
            "driver_cuda": self.driver_cuda,
            "constraints": [c.as_dict() for c in self.constraints],
            "unmet_constraints": [c.as_dict() for c in self.unmet],
            "cuda_libraries": [{"name": p.name, "version": p.version, "build": p.build} for p in self.libraries],
            "cpu_variants": [{"name": p.name, "version": p.version, "build": p.build} for p in self.cpu_variants],
            "notes": self.notes,
        }


@dataclass
class CudaAudit:
    flavor: str
    driver: str | None
    platforms: list[PlatformCuda]

    def findings(self) -> list[Finding]:
        found = []
        for item in self.platforms:
            for package in item.cpu_variants:
                found.append(
                    Finding(
                        "cpu-variant",
                        package.name,
                        f"{package.spec} is a CPU build in the CUDA flavor '{self.flavor}' [{item.platform}]",
                    )
                )
            if self.driver is None or not item.uses_cuda:
                continue
            requirement = item.requirement
            if (
                requirement
                and requirement.compatible_driver
                and not driver_satisfies(self.driver, requirement.compatible_driver)
            ):
                found.append(
                    Finding(
                        "driver-too-old",
                        f"driver {self.driver}",
                        f"CUDA {requirement.cuda} needs driver >= {requirement.compatible_driver} [{item.platform}]",
                    )
                )
            for constraint in item.unmet:
                found.append(
                    Finding(
                        "driver-too-old",
                        constraint.package,
                        f"needs '{CUDA_VIRTUAL} {constraint.spec}', driver {self.driver} runs CUDA "
                        f"{item.driver_cuda or 'none'} [{item.platform}]",
                    )
                )
        return sorted(found)

    def as_dict(self) -> dict[str, Any]:
        return {
            "flavor": self.flavor,
            "driver": self.driver,
            "platforms": [p.as_dict() for p in self.platforms],
            "findings": [f.as_dict() for f in self.findings()],
        }


def _cuda_specs(record: LockedPackage) -> list[CudaConstraint]:
    found = []
    for source, specs in (("depends", record.depends), ("constrains", record.constrains)):
        for spec in specs:
            name, _, rest = spec.strip().partition(" ")
            if name == CUDA_VIRTUAL:
                found.append(CudaConstraint(record.name, rest.strip() or "*", source))
    return found


_LOWER_BOUND = re.compile(r">=?\s*([0-9]+(?:\.[0-9]+)*)")
_PLAIN = re.compile(r"^==?\s*([0-9]+(?:\.[0-9]+)*)(?:\.\*)?$|^([0-9]+(?:\.[0-9]+)*)(?:\.\*)?$")


def _lowest_cuda(spec: str) -> str | None:
    """The lowest CUDA version a `__cuda` spec admits, as far as its lower bound says (`>=12.4` → 12.4)."""
    bounds = [m.group(1) for m in _LOWER_BOUND.finditer(spec)]
    plain = _PLAIN.match(spec.strip())
    if plain:
        bounds.append(plain.group(1) or plain.group(2))
    return max(bounds, key=_key) if bounds else None


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _virtual_cuda(lock: LockFile, platform: str) -> str | None:
    lock_platform = find_platform(lock, platform)
    for text in lock_platform.virtual_packages if lock_platform else []:
        name, _, version = text.partition("=")
        if name == CUDA_VIRTUAL:
            return version.split("=")[0] or None
    return None


def _satisfied(spec: str, cuda: str | None) -> bool:
    if spec in ("", "*"):
        return cuda is not None
    if cuda is None:
        return False
    try:
        return bool(VersionSpec(spec).matches(Version(cuda)))
    except (InvalidVersionSpecError, InvalidVersionError, ValueError):
        return True  # a spec this check cannot read is not held against the driver


def _platform_cuda(
    workspace: Workspace, flavor: str, platform: str, lock: LockFile, driver: str | None
) -> PlatformCuda:
    spec = workspace.resolve(flavor).platform(platform)
    records = [from_record(r) for r in locked_records(workspace, flavor, platform, lock=lock)]
    by_name = {r.name: r for r in records}
    cuda_version = by_name[CUDA_VERSION_PACKAGE].version if CUDA_VERSION_PACKAGE in by_name else None
    item = PlatformCuda(platform, spec.requirements.cuda, cuda_version)
    for record in records:
        item.constraints += _cuda_specs(record)
    virtual = _virtual_cuda(lock, platform)
    if virtual:
        item.constraints.append(CudaConstraint("pixi.lock", f">={virtual}", "virtual-packages"))
    item.constraints.sort()
    if not item.uses_cuda:
        return item
    item.libraries = sorted((r for r in records if CUDA_LIBRARY.match(r.name)), key=lambda r: r.name)
    item.cpu_variants = [r for r in records if is_cpu_variant(r.build, list(r.track_features))]
    lowest = [cuda_version] if cuda_version else []
    lowest += [v for v in (_lowest_cuda(c.spec) for c in item.constraints) if v]
    if lowest:
        item.requirement = driver_requirement(max(lowest, key=_key))
        if item.requirement.compatible_driver is None:
            item.notes.append(f"no driver is known for CUDA {item.requirement.cuda} (extend cli/cuda.py's table)")
    if driver is not None:
        item.driver_cuda = cuda_for_driver(driver)
        item.unmet = [
            c for c in item.constraints if c.source != "virtual-packages" and not _satisfied(c.spec, item.driver_cuda)
        ]
        requirement = item.requirement
        if (
            requirement
            and requirement.toolkit_driver
            and requirement.compatible_driver
            and driver_satisfies(driver, requirement.compatible_driver)
            and not driver_satisfies(driver, requirement.toolkit_driver)
        ):
            item.notes.append(
                f"driver {driver} runs CUDA {requirement.cuda} through minor version compatibility only; "
                f"PTX JIT compilation needs >= {requirement.toolkit_driver}"
            )
    return item


def check_driver_text(driver: str) -> str:
    try:
        PyVersion(driver)
    except InvalidVersion as error:
        raise UserError(
            f"'{driver}' is not a driver version", fix="pass it as nvidia-smi prints it, e.g. --driver 550.54.14"
        ) from error
    return driver


def audit_cuda(
    workspace: Workspace, flavor: str, driver: str | None = None, platforms: list[str] | None = None
) -> CudaAudit:
    chosen = workspace.platform_names(flavor, platforms)
    if driver is not None:
        check_driver_text(driver)
    lock = read_lock(workspace)
    return CudaAudit(flavor, driver, [_platform_cuda(workspace, flavor, p, lock, driver) for p in chosen])
