"""Where the solver reads repodata: a channel's own URL, or a mirror of it (`--mirror NAME=URL`).

A mirror changes only where records are read from; the lock always records the
canonical channel URL, as pixi's mirror setting does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from rattler import Channel, SparseRepoData

from cli.errors import UserError
from cli.lockengine.manifest import canonical_channel_url


@dataclass(frozen=True)
class ChannelSource:
    canonical: str
    location: str

    @property
    def local_path(self) -> Path | None:
        parsed = urlparse(self.location)
        if parsed.scheme == "file":
            return Path(unquote(parsed.path))
        if parsed.scheme == "" and Path(self.location).is_absolute():
            return Path(self.location)
        return None


def parse_mirrors(values: list[str] | None) -> dict[str, str]:
    """`conda-forge=file:///srv/cf` → {canonical URL of conda-forge: location}."""
    mirrors: dict[str, str] = {}
    for value in values or []:
        name, sep, location = value.partition("=")
        if not sep or not name or not location:
            raise UserError(
                f"cannot read --mirror {value!r}", fix="write --mirror NAME=URL, e.g. conda-forge=file:///srv/cf"
            )
        if "://" not in location:  # a folder on disk, absolute or relative to here
            location = Path(location).absolute().as_uri()
        mirrors[canonical_channel_url(name)] = location.rstrip("/") + "/"
    return mirrors


def channel_sources(channels: tuple[str, ...], mirrors: dict[str, str]) -> list[ChannelSource]:
    return [ChannelSource(url, mirrors.get(url, url)) for url in channels]


def local_repodata(source: ChannelSource, subdirs: list[str]) -> list[SparseRepoData]:
    """Repodata of a channel on disk, read with the canonical channel's identity.

    A subdir the channel does not have is simply empty (many channels lack osx-arm64).
    """
    path = source.local_path
    assert path is not None
    if not path.is_dir():
        raise UserError("channel folder does not exist", path=path, fix="check the channel URL or --mirror")
    channel = Channel(source.canonical)
    return [
        SparseRepoData(channel, subdir, path / subdir / "repodata.json")
        for subdir in subdirs
        if (path / subdir / "repodata.json").is_file()
    ]
