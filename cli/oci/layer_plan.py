"""The layer plan: which packages of a flavor's environment share an image layer, decided from the lock alone.

The rule (README, "How the environment is split into layers"):

1. **Shared or own.** A package locked identically (same sha256) in every flavor of the
   workspace is *shared*; for a `noarch: python` package the flavors' python must be the
   same record too, since its files land under python's site-packages (the rule lives in
   `cli.lockengine.sharing`, which the Docker path's shared stage follows too). Every flavor
   installs into the same prefix, so a shared package gives the same files, hence the same
   layer bytes, in every flavor. Shared layers come first, in the same order in every
   flavor: their chain of parents is the same too, which engines that store layers by
   chain (Docker's classic store) need before they reuse them.
2. **Large packages alone.** A package of `LARGE_BYTES` or more once installed gets a layer
   of its own (CUDA libraries, python, pytorch, ...): relocking it rewrites that layer only,
   and relocking anything else leaves it alone. At most `MAX_SINGLE` per part, the largest,
   so that the image stays far below the ~125 layers overlay file systems stack.
3. **Small packages in stable buckets.** The others go into `SMALL_BUCKETS` buckets per kind
   (native library or python package), chosen by a hash of the package *name*: a relock that
   changes a package's version or build keeps it in its bucket, and adding or removing one
   package changes one bucket only. Native libraries and python packages do not share a
   bucket, since python packages move faster.
4. **Order.** In each part: single native packages, single python packages, native buckets,
   python buckets; singles by name. Big, slow-moving layers sit low; a relock of a small
   package only moves small layers above it.

Each layer's files carry the newest build time of its packages (clamped to
SOURCE_DATE_EPOCH) as mtime, not the lock's commit time: a relock commit leaves the
layers of unchanged packages byte-identical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rattler import RepoDataRecord

from cli.lockengine.sharing import is_noarch_python, split_shared

LARGE_BYTES = 32 * 1024 * 1024
MAX_SINGLE = 40
SMALL_BUCKETS = 4

Part = Literal["shared", "flavor"]
Kind = Literal["native", "python"]
PARTS: tuple[Part, ...] = ("shared", "flavor")
KINDS: tuple[Kind, ...] = ("native", "python")


@dataclass(frozen=True)
class PlannedLayer:
    part: Part
    label: str  # a package's name, or "native packages 2"
    packages: tuple[str, ...]  # package names, sorted
    timestamp: int  # the newest build time of its packages, seconds since the epoch (0: unknown)

    def mtime(self, epoch: int) -> int:
        return min(epoch, self.timestamp)


def package_kind(record: RepoDataRecord) -> Kind:
    """python: a package that needs python (its files are python's); native: the rest, python itself included."""
    if is_noarch_python(record):
        return "python"
    needs_python = any(dependency.split()[0] == "python" for dependency in record.depends if dependency.split())
    return "python" if needs_python else "native"


def bucket_of(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % SMALL_BUCKETS


def plan_layers(
    records: Sequence[RepoDataRecord], shared: set[str], installed_size: Mapping[str, int]
) -> list[PlannedLayer]:
    """The flavor's package layers, bottom to top. `installed_size`: package name -> bytes on disk."""
    common, own = split_shared(records, shared)
    by_part: dict[Part, list[RepoDataRecord]] = {"shared": common, "flavor": own}
    layers: list[PlannedLayer] = []
    for part in PARTS:
        layers += _plan_part(part, by_part[part], installed_size)
    return layers


def _plan_part(part: Part, records: list[RepoDataRecord], installed_size: Mapping[str, int]) -> list[PlannedLayer]:
    def size(record: RepoDataRecord) -> int:
        return installed_size.get(record.name.normalized, 0)

    large = [r for r in records if size(r) >= LARGE_BYTES]
    large = sorted(large, key=lambda r: (-size(r), r.name.normalized))[:MAX_SINGLE]
    single = {r.name.normalized for r in large}
    layers = []
    for kind in KINDS:
        for record in sorted((r for r in large if package_kind(r) == kind), key=lambda r: r.name.normalized):
            layers.append(_layer(part, record.name.normalized, [record]))
    for kind in KINDS:
        buckets: dict[int, list[RepoDataRecord]] = {}
        for record in records:
            if record.name.normalized not in single and package_kind(record) == kind:
                buckets.setdefault(bucket_of(record.name.normalized), []).append(record)
        for number in sorted(buckets):
            layers.append(_layer(part, f"{kind} packages {number + 1}", buckets[number]))
    return layers


def _layer(part: Part, label: str, records: list[RepoDataRecord]) -> PlannedLayer:
    names = tuple(sorted(r.name.normalized for r in records))
    newest = max((int(r.timestamp.timestamp()) for r in records if r.timestamp is not None), default=0)
    return PlannedLayer(part, label, names, newest)
