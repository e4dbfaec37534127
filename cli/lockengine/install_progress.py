"""What an install is doing, on stderr: bytes checked in the cache, bytes downloaded (with speed), packages linked.

The same object is py-rattler's installer reporter (its callbacks arrive on py-rattler's own
threads; rich's Progress is thread-safe) and counts what was downloaded for the install's result.
"""

from __future__ import annotations

import threading
from types import TracebackType

from rattler.install import InstallerReporter
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from cli.progress import stderr_progress


class AmountColumn(ProgressColumn):
    """Bytes and speed for byte tasks, "n/m" for package counts."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = DownloadColumn()
        self.speed = TransferSpeedColumn()
        self.count = MofNCompleteColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "packages":
            return Text(f"{self.count.render(task)} packages")
        return Text.assemble(self.bytes.render(task), " ", self.speed.render(task))


class InstallProgress(InstallerReporter):
    def __init__(self, show: bool) -> None:
        self.progress = stderr_progress(
            TextColumn("{task.description:<12}"), BarColumn(), AmountColumn(), TimeElapsedColumn(), show=show
        )
        self._lock = threading.Lock()
        self._names: dict[int, str] = {}
        self._downloads: dict[int, tuple[str, int]] = {}  # token → (package, bytes seen so far)
        self.downloaded: list[str] = []
        self.downloaded_bytes = 0
        self._verify: TaskID | None = None
        self._download: TaskID | None = None
        self._link: TaskID | None = None

    def __enter__(self) -> InstallProgress:
        self.progress.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.progress.__exit__(kind, error, trace)

    # --- our own phases ---

    def start_verify(self, description: str, total_bytes: int | None) -> None:
        self._verify = self.progress.add_task(description, total=total_bytes)

    def planned(self, total_bytes: int) -> None:
        if self._verify is not None:
            self.progress.update(self._verify, total=total_bytes)

    def hashed(self, size: int) -> None:
        if self._verify is not None:
            self.progress.advance(self._verify, size)

    def finish_verify(self) -> None:
        if self._verify is not None:
            self.progress.remove_task(self._verify)
            self._verify = None

    def start_transaction(self, download_bytes: int, packages: int) -> None:
        if download_bytes:
            self._download = self.progress.add_task("downloading", total=download_bytes)
        self._link = self.progress.add_task("linking", total=packages, unit="packages")

    # --- py-rattler's InstallerReporter protocol ---

    def on_populate_cache_start(self, operation: int, package_name: str) -> int:
        with self._lock:
            self._names[operation] = package_name
        return operation

    def on_download_start(self, cache_entry: int) -> int:
        with self._lock:
            name = self._names.get(cache_entry, "?")
            self._downloads[cache_entry] = (name, 0)
            self.downloaded.append(name)
        return cache_entry

    def on_download_progress(self, download_idx: int, progress: int, total: int | None) -> None:
        with self._lock:
            name, seen = self._downloads.get(download_idx, ("?", 0))
            self._downloads[download_idx] = (name, progress)
            self.downloaded_bytes += progress - seen
        if self._download is not None:
            self.progress.advance(self._download, progress - seen)

    def on_link_complete(self, index: int) -> None:
        if self._link is not None:
            self.progress.advance(self._link, 1)

    # The rest of the protocol: nothing to show (explicit, since the protocol's own bodies are empty).

    def on_transaction_start(self, total_operations: int) -> None:
        return None

    def on_transaction_operation_start(self, operation: int) -> None:
        return None

    def on_validate_start(self, cache_entry: int) -> int:
        return cache_entry

    def on_validate_complete(self, validate_idx: int) -> None:
        return None

    def on_download_completed(self, download_idx: int) -> None:
        return None

    def on_populate_cache_complete(self, cache_entry: int) -> None:
        return None

    def on_unlink_start(self, operation: int, package_name: str) -> int:
        return operation

    def on_unlink_complete(self, index: int) -> None:
        return None

    def on_link_start(self, operation: int, package_name: str) -> int:
        return operation

    def on_transaction_operation_complete(self, operation: int) -> None:
        return None

    def on_transaction_complete(self) -> None:
        return None

    def on_post_link_start(self, package_name: str, script_path: str) -> int:
        return 0

    def on_post_link_complete(self, index: int, success: bool) -> None:
        return None

    def on_pre_unlink_start(self, package_name: str, script_path: str) -> int:
        return 0

    def on_pre_unlink_complete(self, index: int, success: bool) -> None:
        return None
