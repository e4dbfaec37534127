#!/usr/bin/env bash
# One command for a fresh machine: set up .venv with the CLI and its test tools, install the
# Debian tools the image tests use, then run ruff, mypy and the whole pytest suite.
#
# Debian packages (installed when missing and run as root):
#   skopeo, umoci                      read the OCI engine's archives (tests/oci)
#   podman, runc, uidmap, fuse-overlayfs, catatonit
#                                      the real container engine of tests/engine (runc: crun cannot
#                                      set its limits in a sandbox without CAP_SYS_RESOURCE;
#                                      catatonit: the init process of `podman run --init`)
#   mmdebstrap                         builds the Debian base of tests/engine, cached in
#                                      ${OSPARC_ENGINE_TEST_CACHE:-~/.cache/osparc-ml-runners/engine-tests}
# Arguments go to pytest, e.g. `bash tests/run.sh -m "not engine"` leaves the podman tests out.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

missing=()
for tool in skopeo umoci podman runc newuidmap fuse-overlayfs mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -x /usr/libexec/podman/catatonit ] || command -v catatonit >/dev/null 2>&1 || missing+=(catatonit)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  packages=("${missing[@]/newuidmap/uidmap}")
  echo "installing ${packages[*]} from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

export PATH="$PWD/.venv/bin:$PATH"
ruff check cli runner tests bench
mypy
python -m pytest "$@"
