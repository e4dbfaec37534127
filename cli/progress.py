"""Progress displays on stderr: drawn live on a terminal, and not at all when stderr is a pipe or a file.

rich draws a live display on any stream; on one that is not a terminal it cannot redraw, and
what it leaves (a blank line where the display stood, stray frames) lands in the log or the
pipe, in front of the one line an error prints. So the display is off there.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress, ProgressColumn


def stderr_progress(*columns: str | ProgressColumn, show: bool, transient: bool = True) -> Progress:
    console = Console(stderr=True)
    return Progress(*columns, console=console, disable=not (show and console.is_terminal), transient=transient)
