# shellcheck shell=sh
# Functions of common/entrypoint.sh (POSIX sh), sourced by it and by its tests.
#
# Started as root: check that INPUT_FOLDER and OUTPUT_FOLDER are mounted and owned by the
# same user, make the user scu take that user's UID/GID (a root-owned mount puts scu in
# group root instead), hand scu its home and the runner cache (nothing else is touched:
# no walk of the filesystem), then drop root with setpriv and exec the command, so the
# command is this process and receives the container's signals.
# Started as any other user: exec the command as it is.

: "${SC_USER_NAME:=scu}"
: "${SC_USER_HOME:=/home/${SC_USER_NAME}}"
: "${INPUT_FOLDER:=/input}"
: "${OUTPUT_FOLDER:=/output}"
: "${RUNNER_CACHE_DIR:=}"

ep_log() {
    printf 'entrypoint: %s\n' "$*" >&2
}

ep_die() {
    ep_log "error: $*"
    exit 1
}

# ep_owner PATH: "uid:gid" of PATH
ep_owner() {
    stat -c '%u:%g' "$1"
}

# ep_mount_owner: "uid:gid" shared by both mounted folders, or exit 1 saying what is wrong
ep_mount_owner() {
    for ep_folder in "$INPUT_FOLDER" "$OUTPUT_FOLDER"; do
        [ -d "$ep_folder" ] ||
            ep_die "$ep_folder is not mounted (docker run -v <folder>:$ep_folder); its owner tells whose files these are"
    done
    ep_in=$(ep_owner "$INPUT_FOLDER")
    ep_out=$(ep_owner "$OUTPUT_FOLDER")
    [ "$ep_in" = "$ep_out" ] ||
        ep_die "$INPUT_FOLDER is owned by $ep_in but $OUTPUT_FOLDER by $ep_out: mount two folders of the same user"
    printf '%s\n' "$ep_in"
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

# ep_adopt_owner UID GID: make scu the owner of the mounts, or a member of their group if root owns them
ep_adopt_owner() {
    if [ "$1" -eq 0 ]; then
        ep_log "$INPUT_FOLDER is owned by root: adding $SC_USER_NAME to group root"
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

# ep_own_places: give scu its home and the runner cache; only those, and only if not already its own
ep_own_places() {
    ep_ids="$(id -u "$SC_USER_NAME"):$(id -g "$SC_USER_NAME")"
    for ep_place in "$SC_USER_HOME" "$RUNNER_CACHE_DIR"; do
        [ -n "$ep_place" ] || continue
        mkdir -p "$ep_place"
        if [ "$(ep_owner "$ep_place")" != "$ep_ids" ]; then
            ep_log "chown $ep_ids $ep_place"
            # --no-dereference: a symlink in a mounted cache must not hand over its target.
            chown -R --no-dereference "$ep_ids" "$ep_place"
        fi
    done
}

# ep_exec_as_user COMMAND...: replace this shell with COMMAND running as scu (its UID, GID and groups)
ep_exec_as_user() {
    ep_uid=$(id -u "$SC_USER_NAME")
    ep_gid=$(id -g "$SC_USER_NAME")
    ep_groups=$(id -G "$SC_USER_NAME" | tr ' ' ',')
    HOME="$SC_USER_HOME"
    USER="$SC_USER_NAME"
    LOGNAME="$SC_USER_NAME"
    export HOME USER LOGNAME
    if command -v setpriv >/dev/null 2>&1; then
        exec setpriv --reuid="$ep_uid" --regid="$ep_gid" --groups="$ep_groups" --inh-caps=-all -- "$@"
    elif command -v gosu >/dev/null 2>&1; then
        exec gosu "$SC_USER_NAME" "$@"
    elif command -v su-exec >/dev/null 2>&1; then
        exec su-exec "$SC_USER_NAME" "$@"
    fi
    ep_die "no setpriv (util-linux), gosu or su-exec in the image: cannot drop root"
}

ep_main() {
    [ "$#" -gt 0 ] || set -- run
    if [ "$(id -u)" -ne 0 ]; then
        ep_log "started as $(id -u):$(id -g), not root: running the command as it is"
        exec "$@"
    fi
    ep_ids=$(ep_mount_owner) || exit 1
    ep_adopt_owner "${ep_ids%%:*}" "${ep_ids##*:}"
    ep_own_places
    ep_log "running $* as $(id "$SC_USER_NAME")"
    ep_exec_as_user "$@"
}
