#!/usr/bin/env bash
# Set up a virtual environment with the CLI and its test tools, then run the checks and the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/ruff check cli runner tests bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
