"""`bench/oci.py --realistic`: both flavors of the committed pixi.lock built at real size on a synthetic channel.

See bench/oci.py for what is reported and bench/realistic_channel.py for how the channel is made.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from realistic_channel import (
    CONDA_FORGE,
    ArchiveFacts,
    Planned,
    Texture,
    another_build,
    archive_facts,
    plan_package,
    relocked,
    synthetic_lock,
    write_package,
)

from cli.lockengine.lockfile import locked_records
from cli.lockengine.manifest import load_workspace
from cli.oci import Compression, OciBuildResult, build_oci_image
from cli.oci.tarball import file_copy, write_layer
from tests.oci.conftest import add_repository_files, make_rootfs

ROOT = Path(__file__).resolve().parents[1]
FLAVORS = ("pytorch", "tensorflow")
SMALL_RELOCK = ("numpy",)
FRAMEWORK_RELOCK = {"pytorch": ("pytorch", "libtorch"), "tensorflow": ("tensorflow", "tensorflow-base")}
REPACKED = "package cache warm, layer cache cold"
UNVERIFIED = "package cache warm, no layer cache, no paths.json check"
GOAL_SECONDS = 60  # issue 12: a flavor of 3 GB or more builds in under 60 s with a warm package cache
EPOCH = 1_780_000_000  # a fixed SOURCE_DATE_EPOCH, later than every locked package


@dataclass(frozen=True)
class Run:
    result: OciBuildResult
    seconds: float  # wall clock
    cpu: float  # CPU seconds of every thread of this process (zstd's workers included)
    load: float  # the machine's 1-minute load average when the build ended


@dataclass(frozen=True)
class Rate:
    """One layer written: input (tar) bytes, output bytes, wall and CPU seconds, load average."""

    tar_bytes: int
    blob_bytes: int
    seconds: float
    cpu: float
    load: float


@dataclass
class Bench:
    work: Path
    channel: Path
    channel_url: str
    workspace: Path
    base: Path
    texture: Texture
    planned: dict[str, Planned]  # by the committed lock's URL
    facts: dict[str, ArchiveFacts]
    lock_text: str
    compression: Compression

    def build(self, flavor: str, cache: Path, *, verify: bool = True, reuse: bool = True) -> Run:
        output = self.work / "image.tar"
        start, cpu = time.perf_counter(), time.process_time()
        result = build_oci_image(
            load_workspace(self.workspace), flavor, self.base, output, source_date_epoch=EPOCH, cache_dir=cache,
            compression=self.compression, verify_files=verify, reuse_layers=reuse,
        )  # fmt: skip
        run = Run(result, time.perf_counter() - start, time.process_time() - cpu, os.getloadavg()[0])
        output.unlink()
        return run

    def write_lock(self, text: str) -> None:
        from cli.images.generated import write_generated
        from cli.lockengine.export import write_exports

        (self.workspace / "pixi.lock").write_text(text)
        workspace = load_workspace(self.workspace)
        write_exports(workspace)
        write_generated(workspace)

    def relock(self, flavor: str, names: tuple[str, ...]) -> str:
        """The lock with `names` of FLAVOR rebuilt: another build string, other bytes."""
        text = self.lock_text
        for url, package in self.planned.items():
            if package.record.name.normalized not in names or url not in self.flavor_urls(flavor):
                continue
            record = package.record
            build = another_build(str(record.build))
            path = write_package(package, self.channel, self.work / "assemble", self.texture, build)
            pin = (f"{record.name.normalized} {record.version} {record.build}", f"{record.name.normalized} "
                   f"{record.version} {build}")  # fmt: skip
            text = relocked(text, self.facts[url], archive_facts(path), pin)
        return text

    def flavor_urls(self, flavor: str) -> set[str]:
        return {record.url for record in locked_records(load_workspace(ROOT), flavor, "linux-64")}


def prepare(work: Path, scale: float, compression: Compression) -> Bench:
    repo = load_workspace(ROOT)
    records = {url: record for flavor in FLAVORS for record in locked_records(repo, flavor, "linux-64") for url in
               [record.url]}  # fmt: skip
    planned = {url: plan_package(record, scale) for url, record in records.items()}
    channel = work / "channel" / "synthetic-forge"
    channel_url = channel.as_uri() + "/"
    texture = Texture()
    start = time.perf_counter()
    facts = {
        url: archive_facts(write_package(package, channel, work / "assemble", texture))
        for url, package in sorted(planned.items())
    }
    print(f"synthetic channel: {len(facts)} packages, {mb(sum(f.size for f in facts.values()))} MB of archives, "
          f"made in {time.perf_counter() - start:.0f} s", file=sys.stderr)  # fmt: skip
    workspace = work / "ws"
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    manifest = (ROOT / "pixi.toml").read_text().replace('channels = ["conda-forge"]', f'channels = ["{channel_url}"]')
    (workspace / "pixi.toml").write_text(manifest)
    shutil.copytree(ROOT / "flavors", workspace / "flavors", ignore=shutil.ignore_patterns("service.cli"))
    add_repository_files(workspace)
    lock_text = synthetic_lock((ROOT / "pixi.lock").read_text(), channel_url, facts)
    bench = Bench(work, channel, channel_url, workspace, make_rootfs(work / "base.tar"), texture, planned, facts,
                  lock_text, compression)  # fmt: skip
    bench.write_lock(lock_text)
    return bench


def mb(size: float) -> str:
    return f"{size / 1e6:,.0f}"


def image_bytes(result: OciBuildResult) -> int:
    return sum(layer.size for layer in result.layers)


def changed_bytes(new: OciBuildResult, old: OciBuildResult) -> int:
    """What a registry sends (and a content store keeps) of `new` when `old` is there already."""
    have = {layer.digest for layer in old.layers}
    return sum(layer.size for layer in new.layers if layer.digest not in have)


def chain_bytes(new: OciBuildResult, old: OciBuildResult) -> int:
    """What Docker's classic store pulls: every layer from the first one whose chain differs."""
    for index, (layer, before) in enumerate(zip(new.layers, old.layers, strict=False)):
        if layer.diff_id != before.diff_id:
            return sum(layer.size for layer in new.layers[index:])
    return sum(layer.size for layer in new.layers[len(old.layers) :])


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%"


def timed(label: str, action: Callable[[], Run]) -> Run:
    print(f"  {label} ...", file=sys.stderr, flush=True)
    run = action()
    print(f"  {label}: {run.seconds:.1f} s ({run.cpu:.1f} CPU s, load {run.load:.1f}), "
          f"{run.result.manifest_digest}", file=sys.stderr, flush=True)  # fmt: skip
    return run


def run_realistic(work: Path | None, scale: float, keep: bool, compression: Compression) -> None:
    temporary = work is None
    work = work or Path(tempfile.mkdtemp(prefix="oci-realistic-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        bench = prepare(work, scale, compression)
        report(bench)
    finally:
        for name in ("ws", "assemble", "base.tar", "image.tar", *(f"cache-{f}" for f in FLAVORS)):
            shutil.rmtree(work / name, ignore_errors=True) if (work / name).is_dir() else (work / name).unlink(True)
        if temporary or not keep:
            shutil.rmtree(work, ignore_errors=True)


def packing_rates(bench: Bench) -> dict[str, Rate]:
    """One layer of the texture corpus (real machine code and Python sources) written per compression."""
    folder = bench.work / "texture"
    folder.mkdir(exist_ok=True)
    entries = []
    for name, corpus in (("binary", bench.texture.binary), ("text", bench.texture.text)):
        for number in range(0, len(corpus), 32 << 20):
            path = folder / f"{name}-{number}"
            path.write_bytes(corpus[number : number + (32 << 20)])
            entries.append(file_copy(f"opt/{path.name}", path))
    rates = {}
    for compression in (Compression.zstd, Compression.gzip):
        start, cpu = time.perf_counter(), time.process_time()
        blob = write_layer(entries, folder / "out", 0, compression)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        rates[compression.value] = Rate(blob.uncompressed_size, blob.size, seconds, cpu, os.getloadavg()[0])
        blob.path.unlink()
    shutil.rmtree(folder)
    return rates


def empty_layer_cache(cache: Path) -> Path:
    """The package cache as it is, without the layers kept by earlier builds: every layer is packed."""
    from cli.oci.layer_cache import LayerCache

    shutil.rmtree(LayerCache.beside(cache).root, ignore_errors=True)
    return cache


def report(bench: Bench) -> None:
    rates = packing_rates(bench)
    runs: dict[str, dict[str, Run]] = {}
    for flavor in FLAVORS:
        cache = bench.work / f"cache-{flavor}"
        shutil.rmtree(cache, ignore_errors=True)
        done: dict[str, Run] = {}
        print(f"{flavor}:", file=sys.stderr)
        done["cold"] = timed("cold", lambda: bench.build(flavor, cache))  # noqa: B023
        done["warm"] = timed("warm", lambda: bench.build(flavor, cache))  # noqa: B023
        done[REPACKED] = timed(REPACKED, lambda: bench.build(flavor, empty_layer_cache(cache)))  # noqa: B023
        done[UNVERIFIED] = timed(UNVERIFIED, lambda: bench.build(flavor, cache, verify=False, reuse=False))  # noqa: B023
        for name, packages in (("small", SMALL_RELOCK), ("framework", FRAMEWORK_RELOCK[flavor])):
            bench.write_lock(bench.relock(flavor, packages))
            done[f"relock {name}"] = timed(f"relock {', '.join(packages)}", lambda: bench.build(flavor, cache))  # noqa: B023
            bench.write_lock(bench.lock_text)
        shutil.rmtree(cache, ignore_errors=True)
        runs[flavor] = done
    print_report(bench, runs, rates)


def print_report(bench: Bench, runs: dict[str, dict[str, Run]], rates: dict[str, Rate]) -> None:
    results = {flavor: {name: run.result for name, run in done.items()} for flavor, done in runs.items()}
    first, second = FLAVORS
    print(f"Realistic OCI build: pixi.lock's {', '.join(FLAVORS)} on a synthetic channel "
          f"({bench.compression.value} layers, SOURCE_DATE_EPOCH fixed)\n")  # fmt: skip
    print("Layer compression, one layer of 320 MB of this machine's shared libraries and Python sources "
          "(tar, sha256 of tar and blob, compression, write):\n")  # fmt: skip
    print("| compression | MB/s of input | CPU s | ratio | load |")
    print("|---|---:|---:|---:|---:|")
    for name, run in rates.items():
        print(f"| {name} | {run.tar_bytes / 1e6 / run.seconds:.0f} | {run.cpu:.1f} | "
              f"{run.tar_bytes / run.blob_bytes:.2f} | {run.load:.1f} |")  # fmt: skip
    print()
    estimated = sorted({p.record.name.normalized for p in bench.planned.values() if p.estimated})
    print(f"Archive sizes estimated (the lock has none): {', '.join(estimated)}\n")
    print("| | " + " | ".join(FLAVORS) + " |")
    print("|---|" + "---:|" * len(FLAVORS))

    def row(label: str, value: Callable[[str], str]) -> None:
        print(f"| {label} | " + " | ".join(value(f) for f in FLAVORS) + " |")

    warm = {f: results[f]["warm"] for f in FLAVORS}
    other = {first: warm[second], second: warm[first]}
    row("locked packages", lambda f: str(sum(len(layer.packages) for layer in warm[f].layers)))
    row("environment unpacked, MB", lambda f: mb(warm[f].environment_size))
    row("image (all layers), MB", lambda f: mb(image_bytes(warm[f])))
    row("layers (shared + own package layers)", lambda f: f"{len(warm[f].layers)} "
        f"({len(warm[f].layers_of('shared'))} + {len(warm[f].layers_of('flavor'))})")  # fmt: skip
    for name in ("cold", "warm", REPACKED, UNVERIFIED, "relock small", "relock framework"):

        def timing(f: str, n: str = name) -> str:
            run = runs[f][n]
            return f"{run.seconds:.1f} ({run.cpu:.1f} CPU s, load {run.load:.1f})"

        row(f"build {name}, s", timing)
    row("build rate, every layer packed again (unpacked MB/s)",
        lambda f: f"{warm[f].environment_size / 1e6 / runs[f][REPACKED].seconds:.0f}")  # fmt: skip
    row("CPU s per unpacked GB, every layer packed again",
        lambda f: f"{runs[f][REPACKED].cpu / (warm[f].environment_size / 1e9):.1f}")  # fmt: skip

    def share(part: Callable[[str], int]) -> Callable[[str], str]:
        return lambda f: f"{mb(part(f))} ({percent(part(f), image_bytes(warm[f]))})"

    row("shared with the other flavor, MB", share(lambda f: image_bytes(warm[f]) - changed_bytes(warm[f], other[f])))
    row("registry sends when pulled after the other, MB", share(lambda f: changed_bytes(warm[f], other[f])))
    for name, what in (("relock small", "numpy"), ("relock framework", "framework")):

        def relock_changed(f: str, n: str = name) -> int:
            return changed_bytes(results[f][n], warm[f])

        def relock_chain(f: str, n: str = name) -> int:
            return chain_bytes(results[f][n], warm[f])

        row(f"{what} relocked: changed layer bytes, MB", share(relock_changed))
        row(f"{what} relocked: Docker classic store pulls, MB", share(relock_chain))
    same = all(
        len({results[f][n].manifest_digest for n in ("cold", "warm", REPACKED, UNVERIFIED)}) == 1 for f in FLAVORS
    )
    print(f"\nSame inputs, same digest (cold, warm, packed again, unverified): {'yes' if same else 'NO'}")
    print(f"\nGoal: a flavor of 3 GB or more unpacked builds in under {GOAL_SECONDS} s with a warm package cache")
    for flavor in FLAVORS:
        size = warm[flavor].environment_size
        for name, what in (("warm", "layer cache warm"), (REPACKED, "layer cache cold")):
            run = runs[flavor][name]
            verdict = "met" if run.seconds < GOAL_SECONDS else "MISSED"
            print(f"- {flavor} ({mb(size)} MB unpacked), {what}: {run.seconds:.1f} s "
                  f"({run.cpu:.1f} CPU s, load {run.load:.1f}): {verdict}")  # fmt: skip
    for flavor in FLAVORS:
        print(f"\nLayers of {flavor} (warm build):\n")
        print("| role | layer | MB | packages |")
        print("|---|---|---:|---|")
        for layer in warm[flavor].layers:
            names = ", ".join(layer.packages)
            names = names if len(names) < 90 else names[:87] + "..."
            print(f"| {layer.role} | {layer.label} | {mb(layer.size)} | {names} |")
    if not same:
        sys.exit(1)


__all__ = ["CONDA_FORGE", "run_realistic"]
