"""Example job: summarise the numbers in input 2 and record which ML stack the flavor provides.

Standard library only, so it runs offline on any flavor:

    python -m cli run pytorch --input runner/examples/hello --output /tmp/hello-out
"""

import contextlib
import json
import os
import platform
import statistics
import sys
from importlib import metadata
from pathlib import Path


def stack() -> dict[str, str]:
    """Versions of the usual ML packages, read from their metadata (importing torch would take seconds)."""
    found = {}
    for name in ("torch", "tensorflow", "jax", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def main() -> None:
    numbers_file = Path(os.environ["INPUT_2"]) / "numbers.txt"
    numbers = [float(word) for word in numbers_file.read_text().split()] if numbers_file.exists() else []
    summary = {
        "count": len(numbers),
        "mean": statistics.fmean(numbers) if numbers else None,
        "python": platform.python_version(),
        "executable": sys.executable,
        "packages": stack(),
    }
    output = Path(os.environ["OUTPUT_1"])
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"read {len(numbers)} numbers from {numbers_file.name}, mean {summary['mean']}")
    print(f"wrote {output / 'summary.json'}")


if __name__ == "__main__":
    main()
