#!/bin/sh
# Render nginx.conf for the blue/green pair into OUTPUT_DIR.
#
# Usage: render.sh OUTPUT_DIR
#
# Environment (defaults suit the docker stack):
#   ACTIVE_POOL      blue | green            (blue)   pool that gets traffic; the other is backup
#   BLUE_UPSTREAM    host:port of blue       (app_blue:3000)
#   GREEN_UPSTREAM   host:port of green      (app_green:3000)
#   WATCHER_HOST     poolwatch syslog host   (watcher)
#   WATCHER_PORT     poolwatch syslog port   (5514)
#   WATCHER_UNIX     unix datagram socket path; when set, replaces host:port
#   LISTEN_ADDR      nginx listen argument   (80)
#   NGINX_PID_PATH   pid file                (/run/nginx.pid)
#   NGINX_ERROR_LOG  error log target        (/dev/stderr)
#   NGINX_TEMP_DIR   parent of temp paths    (/tmp/nginx)
#
# Substitution is done with sed over an explicit list of names rather than
# envsubst, which is not installed in every nginx image and would also
# expand anything else that happens to look like a variable.
set -eu

die() {
    echo "render.sh: $*" >&2
    exit 2
}

[ $# -eq 1 ] || die "usage: render.sh OUTPUT_DIR"
out_dir=$1
here=$(cd "$(dirname "$0")" && pwd)

ACTIVE_POOL=${ACTIVE_POOL:-blue}
BLUE_UPSTREAM=${BLUE_UPSTREAM:-app_blue:3000}
GREEN_UPSTREAM=${GREEN_UPSTREAM:-app_green:3000}
WATCHER_HOST=${WATCHER_HOST:-watcher}
WATCHER_PORT=${WATCHER_PORT:-5514}
WATCHER_UNIX=${WATCHER_UNIX:-}
LISTEN_ADDR=${LISTEN_ADDR:-80}
NGINX_PID_PATH=${NGINX_PID_PATH:-/run/nginx.pid}
NGINX_ERROR_LOG=${NGINX_ERROR_LOG:-/dev/stderr}
NGINX_TEMP_DIR=${NGINX_TEMP_DIR:-/tmp/nginx}

# PRIMARY_ADDR and BACKUP_ADDR are read through eval below.
# shellcheck disable=SC2034
case $ACTIVE_POOL in
    blue)
        PRIMARY_ADDR=$BLUE_UPSTREAM
        BACKUP_ADDR=$GREEN_UPSTREAM
        ;;
    green)
        PRIMARY_ADDR=$GREEN_UPSTREAM
        BACKUP_ADDR=$BLUE_UPSTREAM
        ;;
    *)
        echo "ACTIVE_POOL must be blue or green, got '$ACTIVE_POOL'" >&2
        exit 2
        ;;
esac

nl='
'
value=""
# Values become bare nginx tokens; whitespace, quotes, ';' or braces would
# let a value end the directive and inject configuration.
inputs="BLUE_UPSTREAM GREEN_UPSTREAM WATCHER_HOST WATCHER_PORT WATCHER_UNIX LISTEN_ADDR NGINX_PID_PATH NGINX_ERROR_LOG NGINX_TEMP_DIR"
for name in $inputs; do
    eval "value=\$$name"
    case $value in
        *[[:space:]\;\{\}\"\'\\]* | *"$nl"*)
            die "$name contains whitespace, a quote, a backslash, ';' or a brace: '$value'"
            ;;
    esac
done

# Placeholders the template may use; any other ${NAME} left after
# substitution is an error.
vars="PRIMARY_ADDR BACKUP_ADDR WATCHER_HOST WATCHER_PORT WATCHER_UNIX LISTEN_ADDR NGINX_PID_PATH NGINX_ERROR_LOG NGINX_TEMP_DIR"

# Escape a value for the replacement side of s|...|...|.
sed_escape() {
    printf '%s' "$1" | sed -e 's/[&|]/\\&/g'
}

script=""
if [ -n "$WATCHER_UNIX" ]; then
    script="s|\${WATCHER_HOST}:\${WATCHER_PORT}|unix:$(sed_escape "$WATCHER_UNIX")|g;"
fi
for name in $vars; do
    eval "value=\$$name"
    script="$script s|\${$name}|$(sed_escape "$value")|g;"
done

mkdir -p "$out_dir"
tmp="$out_dir/.nginx.conf.$$"
trap 'rm -f "$tmp"' EXIT
sed -e "$script" "$here/nginx.conf.template" >"$tmp"

# shellcheck disable=SC2016 # a literal ${NAME} is what is searched for
leftover=$(grep -o '\${[A-Za-z_][A-Za-z0-9_]*}' "$tmp" | sort -u | tr '\n' ' ' || true)
[ -z "$leftover" ] || die "unknown placeholders in template: $leftover"

cp "$here/poolwatch-log-format.conf" "$out_dir/poolwatch-log-format.conf"
# nginx creates each temp path but not its parent.
mkdir -p "$NGINX_TEMP_DIR"
# Replace atomically so that a reload never reads a half-written file.
mv -f "$tmp" "$out_dir/nginx.conf"
trap - EXIT
