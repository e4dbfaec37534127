#!/bin/sh
# Entrypoint of every runner image: adopt the mounts' owner, drop root, exec the command.
# The logic lives in entrypoint_lib.sh (next to this file) so tests run the same functions.
set -o errexit
set -o nounset

. "${ENTRYPOINT_LIB:-$(dirname "$0")/entrypoint_lib.sh}"

ep_main "$@"
