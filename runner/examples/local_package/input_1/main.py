"""Example job with a requirements.txt: the package it needs ships with the code, so it works offline.

requirements.txt names the local folder `./greeting`; the runner builds it into a cached
overlay on top of the flavor's environment (uv builds it with its bundled `uv_build`
backend, no index needed). A second run reuses the overlay.

    python -m cli run pytorch --input runner/examples/local_package --output /tmp/greeting-out
"""

import os
from pathlib import Path

import greeting


def main() -> None:
    message = greeting.hello("oSPARC")
    (Path(os.environ["OUTPUT_1"]) / "greeting.txt").write_text(message + "\n")
    print(message)


if __name__ == "__main__":
    main()
