# shellcheck shell=sh
# Functions of common/entrypoint.sh (POSIX sh), sourced by it, by common/Dockerfile (the base
# check) and by the tests.
#
# Started as root (as oSPARC's backend starts every computational service, with Init and no
# User): make the user scu take the UID/GID of the owner of OUTPUT_FOLDER (the backend's
# binds belong to its own user, UID 8004; a local `docker run` brings the caller's folders;
# a root-owned folder puts scu in group root instead), check that scu can read INPUT_FOLDER
# and write OUTPUT_FOLDER and LOG_FOLDER, hand scu its home (nothing else is touched: no
# walk of the filesystem), then exec the command, so the command is this process and
# receives the container's signals:
# - the image's command `run` (the service's run script, which starts the runner) stays
#   root, told RUNNER_JOB_USER=scu: the runner's supervisor runs the job as scu, builds
#   overlays as scu-build or scu-src, and runs no user code, uv or build itself
#   (runner/supervisor.py). It keeps the overlay cache (RUNNER_CACHE_DIR) root's, so this
#   script leaves the cache alone;
# - any other command drops root with setpriv first.
# Started as any other user: exec the command as it is.
#
# Lines the backend reads: errors start with "error:", warnings with "warning:" (its log
# level rule), and no line starts with a digit (its progress rule).

: "${SC_USER_NAME:=scu}"
: "${SC_USER_HOME:=/home/${SC_USER_NAME}}"
: "${INPUT_FOLDER:=/inputs}"
: "${OUTPUT_FOLDER:=/outputs}"
: "${LOG_FOLDER:=}"

# What the entrypoint needs from the base image besides /bin/sh and coreutils; the OCI engine
# checks the same list (cli/oci/base.py ENTRYPOINT_TOOLS).
EP_TOOLS="setpriv usermod groupmod groupadd getent"
# Exit statuses: a folder the job cannot use is bad input (as the runner's 2); a broken image is 70.
EP_EXIT_BAD_FOLDER=2
EP_EXIT_IMAGE=70

ep_log() {
    printf 'entrypoint: %s\n' "$*" >&2
}

# ep_fail STATUS MESSAGE: one line "error: MESSAGE" on stderr, then exit STATUS
ep_fail() {
    ep_status=$1
    shift
    printf 'error: %s\n' "$*" >&2
    exit "$ep_status"
}

# ep_missing_tools: the names of EP_TOOLS not on PATH, space separated (empty when all are there)
ep_missing_tools() {
    ep_missing=""
    for ep_tool in $EP_TOOLS; do
        command -v "$ep_tool" >/dev/null 2>&1 || ep_missing="${ep_missing:+$ep_missing }$ep_tool"
    done
    printf '%s' "$ep_missing"
}

# ep_require_tools: exit with one line naming every missing tool
ep_require_tools() {
    ep_missing=$(ep_missing_tools)
    [ -z "$ep_missing" ] ||
        ep_fail "$EP_EXIT_IMAGE" "the base image lacks $ep_missing, which the entrypoint needs" \
            "(use a base with util-linux, passwd and libc-bin, e.g. docker.io/library/debian:bookworm-slim)"
}

# ep_owner PATH: "uid:gid" of PATH
ep_owner() {
    stat -c '%u:%g' "$1"
}

# ep_describe PATH: "owned by uid:gid, mode NNNN"
ep_describe() {
    stat -c 'owned by %u:%g, mode %a' "$1"
}

# ep_require_folder PATH: exit with one line if PATH is not a folder
ep_require_folder() {
    [ -d "$1" ] ||
        ep_fail "$EP_EXIT_BAD_FOLDER" "$1: no such folder (mount the job's folder there, e.g. docker run -v <folder>:$1)"
}

# ep_group_name GID: the name of the group with GID, creating one if there is none
ep_group_name() {
    ep_name=$(getent group "$1" | cut -d: -f1)
    if [ -z "$ep_name" ]; then
        ep_name="host$1"
        groupadd --gid "$1" "$ep_name"
    fi
    printf '%s\n' "$ep_name"
}

# ep_adopt_owner UID GID: make scu the owner of the outputs, or a member of their group if root owns them
ep_adopt_owner() {
    if [ "$1" -eq 0 ]; then
        ep_log "$OUTPUT_FOLDER is owned by root: adding $SC_USER_NAME to group root"
        usermod --append --groups root "$SC_USER_NAME"
        if [ "$2" -ne 0 ]; then
            usermod --append --groups "$(ep_group_name "$2")" "$SC_USER_NAME"
        fi
        return 0
    fi
    if [ "$(id -g "$SC_USER_NAME")" -ne "$2" ]; then
        if getent group "$2" >/dev/null; then
            ep_log "$SC_USER_NAME joins existing group $2 as its primary group"
            usermod --gid "$2" "$SC_USER_NAME"
        else
            ep_log "group of $SC_USER_NAME takes GID $2"
            groupmod --gid "$2" "$(id -gn "$SC_USER_NAME")"
            [ "$(id -g "$SC_USER_NAME")" -eq "$2" ] || usermod --gid "$2" "$SC_USER_NAME"
        fi
    fi
    if [ "$(id -u "$SC_USER_NAME")" -ne "$1" ]; then
        ep_log "$SC_USER_NAME takes UID $1"
        # --non-unique: the host's UID may belong to an image user already (ubuntu is 1000).
        usermod --non-unique --uid "$1" "$SC_USER_NAME"
    fi
}

# ep_user_ids: set ep_uid, ep_gid, ep_groups to scu's current identity
ep_user_ids() {
    ep_uid=$(id -u "$SC_USER_NAME")
    ep_gid=$(id -g "$SC_USER_NAME")
    ep_groups=$(id -G "$SC_USER_NAME" | tr ' ' ',')
}

# ep_as_user COMMAND...: run COMMAND as scu (not exec); what the job will be allowed to do
ep_as_user() {
    setpriv --reuid="$ep_uid" --regid="$ep_gid" --groups="$ep_groups" --inh-caps=-all -- "$@"
}

# ep_require_access PATH read|write: exit with one line if scu cannot use PATH that way
ep_require_access() {
    if [ "$2" = write ]; then
        ep_as_user test -w "$1" -a -x "$1" && return 0
        ep_fail "$EP_EXIT_BAD_FOLDER" "$1: $(ep_describe "$1"), so the job's user $ep_uid:$ep_gid cannot write to it" \
            "(on the host, give the folder to the job's user, e.g. chown $ep_uid:$ep_gid <folder>, or chmod a+rwx <folder>)"
    fi
    ep_as_user test -r "$1" -a -x "$1" && return 0
    ep_fail "$EP_EXIT_BAD_FOLDER" "$1: $(ep_describe "$1"), so the job's user $ep_uid:$ep_gid cannot read it" \
        "(on the host, make the folder readable: chmod a+rx <folder>)"
}

# ep_prepare_log_folder: LOG_FOLDER, when set, exists and is writable by scu
ep_prepare_log_folder() {
    [ -n "$LOG_FOLDER" ] || return 0
    if [ ! -e "$LOG_FOLDER" ]; then
        mkdir -p "$LOG_FOLDER"
        chown "$ep_uid:$ep_gid" "$LOG_FOLDER"
    fi
    ep_require_folder "$LOG_FOLDER"
    ep_require_access "$LOG_FOLDER" write
}

# ep_own_home: give scu its home, only if not already its own
ep_own_home() {
    mkdir -p "$SC_USER_HOME"
    if [ "$(ep_owner "$SC_USER_HOME")" != "$ep_uid:$ep_gid" ]; then
        ep_log "chown $ep_uid:$ep_gid $SC_USER_HOME"
        # --no-dereference: a symlink in the home must not hand over its target.
        chown -R --no-dereference "$ep_uid:$ep_gid" "$SC_USER_HOME"
    fi
}

# ep_is_runner COMMAND...: whether COMMAND is the image's own `run` (the service's run script, the runner)
ep_is_runner() {
    [ "${1:-}" = run ]
}

# ep_exec_runner COMMAND...: replace this shell with the runner, as root; its supervisor runs the job as scu
ep_exec_runner() {
    RUNNER_JOB_USER="$SC_USER_NAME"
    export RUNNER_JOB_USER
    # The job user's home must not be root's working folder (python -m puts it first on sys.path).
    cd /
    exec "$@"
}

# ep_exec_as_user COMMAND...: replace this shell with COMMAND running as scu (its UID, GID and groups)
ep_exec_as_user() {
    HOME="$SC_USER_HOME"
    USER="$SC_USER_NAME"
    LOGNAME="$SC_USER_NAME"
    export HOME USER LOGNAME
    exec setpriv --reuid="$ep_uid" --regid="$ep_gid" --groups="$ep_groups" --inh-caps=-all -- "$@"
}

ep_main() {
    [ "$#" -gt 0 ] || set -- run
    if [ "$(id -u)" -ne 0 ]; then
        ep_log "started as $(id -u):$(id -g), not root: running the command as it is"
        exec "$@"
    fi
    ep_require_tools
    ep_require_folder "$INPUT_FOLDER"
    ep_require_folder "$OUTPUT_FOLDER"
    ep_ids=$(ep_owner "$OUTPUT_FOLDER")
    ep_adopt_owner "${ep_ids%%:*}" "${ep_ids##*:}"
    ep_user_ids
    ep_require_access "$INPUT_FOLDER" read
    ep_require_access "$OUTPUT_FOLDER" write
    ep_prepare_log_folder
    ep_own_home
    if ep_is_runner "$@"; then
        ep_log "running $* as root's supervisor; the job runs as $SC_USER_NAME ($ep_uid:$ep_gid, groups $ep_groups)"
        ep_exec_runner "$@"
    fi
    ep_log "running $* as $SC_USER_NAME ($ep_uid:$ep_gid, groups $ep_groups)"
    ep_exec_as_user "$@"
}
