"""Where package archives come from (the lock's URL, or a `--mirror` of its channel) and what a failure means.

Downloads are py-rattler's: its client retries transient failures, honours HTTP(S)_PROXY and
its stored credentials, and its package cache checks each archive's sha256 as it streams. This
module only builds that client, maps lock URLs onto mirrors, and turns py-rattler's error chain
into one line that names the URL, the package and the likely way out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rattler import Client, RepoDataRecord
from rattler.networking import AuthenticationMiddleware, RetryMiddleware

from cli.errors import UserError
from cli.lockengine.package_cache import ArchiveMismatch

DEFAULT_RETRIES = 3
NETWORK_CHECK = "check the network and proxy settings (HTTPS_PROXY)"
NETWORK_FIX = (
    f"{NETWORK_CHECK}, fetch from a reachable copy of the channel with "
    "--mirror NAME=URL, or install offline from a --cache-dir that already holds the package"
)
# The locked PyPI packages: uv fetches each from the URL pixi.lock records (no --mirror for those).
PYPI_NETWORK_FIX = f"{NETWORK_CHECK}; uv fetches each wheel from the URL pixi.lock records"
PYPI_MISSING_FIX = "the index does not have this file any more: put it back, or lock again against an index that has it"
PYPI_CHANGED_FIX = (
    "the index or a proxy in between delivers other bytes than were locked: lock again if the index "
    "really replaced the file"
)
MISSING_FIX = (
    "the server does not have this archive: point --mirror NAME=URL at a copy of the channel that does, "
    "or install offline from a --cache-dir that already holds the package"
)
CHANGED_FIX = (
    "the server or a proxy in between delivers other bytes than were locked: use another mirror with "
    "--mirror NAME=URL, or lock again if the channel really rebuilt the package"
)


def download_client(retries: int = DEFAULT_RETRIES) -> Client:
    return Client([RetryMiddleware(retries), AuthenticationMiddleware()])


def mirrored_url(url: str, mirrors: dict[str, str]) -> str:
    """The lock's URL, with its channel's prefix replaced by that channel's mirror (`lock --mirror`'s meaning)."""
    for canonical, location in mirrors.items():
        if url.startswith(canonical):
            return location + url[len(canonical) :]
    return url


def check_mirrors_used(records: list[RepoDataRecord], mirrors: dict[str, str], environment: str) -> None:
    unused = [c for c in mirrors if not any(r.url.startswith(c) for r in records)]
    if unused:
        channels = sorted({r.url.rsplit("/", 2)[0] + "/" for r in records})
        raise UserError(
            f"--mirror names {unused[0]}, which no package of '{environment}' comes from",
            fix=f"mirror one of: {', '.join(channels)}",
        )


@dataclass(frozen=True)
class FetchFailure:
    """One package that could not be fetched, as py-rattler told it."""

    file_name: str
    causes: tuple[str, ...]  # outermost first

    @classmethod
    def parse(cls, text: str) -> FetchFailure | None:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        if not lines:
            return None
        match = re.match(r"failed to fetch (\S+)", lines[0])
        if match is None:
            return None
        causes = tuple(line.removeprefix("Caused by:").strip() for line in lines[1:])
        return cls(match.group(1), causes)

    @property
    def innermost(self) -> str:
        return self.causes[-1] if self.causes else "unknown error"


def _record_by_file(records: list[RepoDataRecord], file_name: str) -> RepoDataRecord | None:
    for record in records:
        if record.file_name == file_name or f"{record.name.normalized}-{record.version}-{record.build}" in file_name:
            return record
    return None


def fetch_error(text: str, records: list[RepoDataRecord], urls: dict[str, str]) -> UserError | None:
    """py-rattler's "failed to fetch" chain as one line; None when the error is not about a download."""
    failure = FetchFailure.parse(text)
    if failure is None:
        return None
    record = _record_by_file(records, failure.file_name)
    package = f"{record.name.normalized} {record.version} {record.build}" if record else failure.file_name
    url = urls.get(record.file_name, record.url) if record else "its URL"
    chain = " ".join(failure.causes)
    mismatch = re.search(r"expected ([0-9a-f]{64}), got ([0-9a-f]{64})", chain)
    if mismatch:
        return UserError(
            f"sha256 mismatch for {failure.file_name} ({package}) from {url}: "
            f"lock says {mismatch.group(1)}, the server sent {mismatch.group(2)}",
            fix=CHANGED_FIX,
        )
    status = re.search(r"HTTP status (?:client|server) error \((\d{3})[^)]*\)", chain)
    if status and status.group(1) in ("404", "410"):
        return UserError(f"cannot download {package}: {url} is not there (HTTP {status.group(1)})", fix=MISSING_FIX)
    if status:
        return UserError(
            f"cannot download {package} from {url}: the server answered HTTP {status.group(1)}", fix=NETWORK_FIX
        )
    if re.search(r"invalid zip archive|zstd|bzip2|unexpected end of archive|invalid tar", chain, re.IGNORECASE):
        return UserError(
            f"cannot download {package} from {url}: what the server sent is not a readable archive "
            f"({failure.innermost})",
            fix=CHANGED_FIX,
        )
    if re.search(r"end of file before message length|error decoding response body|body from connection", chain):
        reason = "the download was cut off before the end"
    else:
        reason = failure.innermost
    return UserError(f"cannot download {package} from {url}: {reason}", fix=NETWORK_FIX)


def extraction_error(record: RepoDataRecord, url: str, error: BaseException) -> UserError:
    """A failure of our own verified extraction (local archive, or the repair of a damaged entry)."""
    if isinstance(error, ArchiveMismatch):
        return UserError(
            f"sha256 mismatch for {record.file_name}: lock says {error.expected}, archive has {error.actual}",
            path=url,
            fix=CHANGED_FIX
            if "://" in url and not url.startswith("file:")
            else "the archive was changed after locking; restore the channel or lock again",
        )
    text = str(error).strip()
    if not url.startswith(("http://", "https://")):
        first = text.splitlines()[0] if text else type(error).__name__
        return UserError(
            f"cannot extract {record.file_name}: {first}",
            path=url,
            fix="check the channel folder or the --mirror the lock points to",
        )
    package = f"{record.name.normalized} {record.version} {record.build}"
    chained = fetch_error(f"failed to fetch {record.file_name}\n{text}", [record], {record.file_name: url})
    return chained or UserError(f"cannot download {package} from {url}: {text}", fix=NETWORK_FIX)


_URL = re.compile(r"(?:https?|file)://[^\s`'\")]+")


def uv_fetch_error(text: str, packages: Mapping[str, str]) -> UserError | None:
    """uv's error chain (`error: …` then `cause: …` lines) about fetching a locked wheel, as one line.

    `packages` maps each locked URL to the package it is (`name version`). None when the error is
    not about fetching one of them.
    """
    lines = [line.strip().removeprefix("error:").removeprefix("cause:").strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    urls = [url for line in lines for url in _URL.findall(line) if url in packages]
    if not urls:
        return None
    url = urls[0]
    package = packages[url]
    chain = " ".join(lines)
    if "Hash mismatch" in chain:
        hashes = re.findall(r"sha256:([0-9a-f]{64})", chain)
        sent = f": lock says {hashes[0]}, the index sent {hashes[1]}" if len(hashes) >= 2 else ""
        return UserError(f"sha256 mismatch for {package} from {url}{sent}", fix=PYPI_CHANGED_FIX)
    status = re.search(r"HTTP status (?:client|server) error \((\d{3})", chain)
    if "Distribution not found at" in chain or (status and status.group(1) in ("404", "410")):
        why = f"HTTP {status.group(1)}" if status else "no such file"
        return UserError(f"cannot download {package}: {url} is not there ({why})", fix=PYPI_MISSING_FIX)
    if status:
        return UserError(
            f"cannot download {package} from {url}: the server answered HTTP {status.group(1)}", fix=PYPI_NETWORK_FIX
        )
    return UserError(f"cannot download {package} from {url}: {lines[-1]}", fix=PYPI_NETWORK_FIX)
