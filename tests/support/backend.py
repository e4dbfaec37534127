"""How oSPARC's computational backend reads a service's log lines: progress and log level.

Source: ITISFoundation/osparc-simcore (commit 19a5f9dd4272cc9adffe5f291483d3f0e10fc017, 2026-08-21, MIT licence):
- the progress expression is `PROGRESS_REGEXP` of
  services/dask-sidecar/src/simcore_service_dask_sidecar/computational_sidecar/models.py
  (the default; an image label `io.simcore.progress_regexp` may replace it, ours do not);
- docker_utils.py `_try_parse_progress`: the line without its trailing newline is searched
  with that expression; before that, a first space-separated word that the `arrow`
  library parses as a date is removed (the log's own timestamp);
- `_guess_progress_value`: `N%` and `N percent` are divided by 100, `a/b` is a fraction,
  anything else is the number itself;
- packages/service-library/src/servicelib/logging_utils.py `guess_message_log_level`: the
  line, lower-cased and stripped, is an error if it starts with `error`, `[error]`, `err`,
  `[err]`, `exception`, `[exception]`, `exc:`, `exc ` or `[exc]`, a warning if it starts with
  `warning`, `[warning]`, `warn` or `[warn]`, else information.
"""

from __future__ import annotations

import re

PROGRESS_REGEXP = re.compile(
    r"^(?:\[?PROGRESS\]?:?)?\s*"
    r"(?P<value>[0-1]?\.\d+|"
    r"\d+\s*(?:(?P<percent_sign>%)|"
    r"\d+\s*"
    r"(?P<percent_explicit>percent))|"
    r"\[?(?P<fraction>\d+\/\d+)\]?"
    r"|0|1)"
)
ERROR_STARTS = ("error", "[error]", "err", "[err]", "exception", "[exception]", "exc:", "exc ", "[exc]")
WARNING_STARTS = ("warning", "[warning]", "warn", "[warn]")


def progress_of(line: str) -> float | None:
    """The progress value the backend reads from `line` taken whole, or None."""
    match = PROGRESS_REGEXP.search(line.strip("\n"))
    if match is None:
        return None
    value = match.group("value")
    if match.group("percent_sign"):
        return float(value.split("%")[0].strip()) / 100
    if match.group("percent_explicit"):
        return float(value.split("percent")[0].strip()) / 100
    if match.group("fraction"):
        numerator, denominator = match.group("fraction").split("/")
        return float(numerator) / float(denominator) if float(denominator) else None
    return float(value)


def may_read_as_progress(line: str) -> bool:
    """Whether the backend could read progress from `line`: taken whole, or after a first word that is a date.

    The backend drops the first word when `arrow.get` reads it as an ISO 8601 date, which
    always starts with a four-digit year: any word that starts with a digit is treated as
    one here, so that no date arrow accepts is missed (without depending on arrow).
    """
    line = line.strip("\n")
    first, _, rest = line.partition(" ")
    if first[:1].isdigit() and progress_of(rest) is not None:
        return True
    return progress_of(line) is not None


def log_level_of(line: str) -> str:
    text = line.lower().strip()
    if text.startswith(ERROR_STARTS):
        return "ERROR"
    if text.startswith(WARNING_STARTS):
        return "WARNING"
    return "INFO"
