#!/usr/bin/env bash
# One command for a fresh machine: set up .venv with the CLI and its test tools, install the
# Debian tools the OCI tests use, then run ruff, mypy and the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

missing=()
for tool in skopeo umoci; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export PATH="$PWD/.venv/bin:$PATH"
ruff check cli runner tests bench
mypy
python -m pytest "$@"
