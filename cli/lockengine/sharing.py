"""Which locked packages every flavor shares: one rule for both image engines.

A package locked identically (same sha256) in every flavor of the workspace is *shared*; a
`noarch: python` package also needs the same python record, since its files land in python's
site-packages and its byte-code is compiled by that python. Every flavor installs into the same
prefix (/opt/conda/envs/flavor), so a shared package gives the same files in every flavor.

The OCI engine puts shared packages in layers of their own below the flavor's own
(`cli.oci.layer_plan`); the Docker path installs them once, in the shared stage image every
flavor image is built FROM (`cli.lockengine.shared_export`, flavors/Dockerfile.shared).
With fewer than two flavors nothing is shared: there is nobody to share with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rattler import RepoDataRecord


def identity(record: RepoDataRecord, python: RepoDataRecord | None) -> str:
    """What must be equal for a package to give the same files in two flavors."""
    digest = record.sha256.hex() if record.sha256 is not None else record.url
    if is_noarch_python(record) and python is not None and python.sha256 is not None:
        return f"{digest}+python:{python.sha256.hex()}"
    return digest


def is_noarch_python(record: RepoDataRecord) -> bool:
    return bool(record.noarch.python)


def python_of(records: Sequence[RepoDataRecord]) -> RepoDataRecord | None:
    return next((r for r in records if r.name.normalized == "python"), None)


def shared_identities(records_by_flavor: Mapping[str, Sequence[RepoDataRecord]]) -> set[str]:
    """The packages every flavor holds identically (an empty set with fewer than two flavors)."""
    if len(records_by_flavor) < 2:
        return set()
    sets = [{identity(record, python_of(records)) for record in records} for records in records_by_flavor.values()]
    return set.intersection(*sets)


def split_shared(
    records: Sequence[RepoDataRecord], shared: set[str]
) -> tuple[list[RepoDataRecord], list[RepoDataRecord]]:
    """One flavor's records as (shared, its own), each in the order given."""
    python = python_of(records)
    mine: list[RepoDataRecord] = []
    common: list[RepoDataRecord] = []
    for record in records:
        (common if identity(record, python) in shared else mine).append(record)
    return common, mine
