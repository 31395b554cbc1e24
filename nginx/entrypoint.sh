#!/bin/sh
# Container entrypoint for nginx in front of the blue/green pair.
#
#   entrypoint.sh                  render the config, then run nginx in the foreground
#   entrypoint.sh switch POOL      re-render with ACTIVE_POOL=POOL and reload nginx
#   entrypoint.sh CMD [ARGS...]    run CMD instead (e.g. a shell for debugging)
#
# A switch lasts until the container is recreated: a restart renders again
# from the container's own ACTIVE_POOL.
#
# Environment, besides what render.sh reads:
#   NGINX_CONF_DIR  directory of the rendered config (/etc/nginx)
#   NGINX_PREFIX    nginx -p prefix (unset: nginx's compiled-in prefix)
#   NGINX_BIN       nginx binary (nginx)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
conf_dir=${NGINX_CONF_DIR:-/etc/nginx}
nginx_bin=${NGINX_BIN:-nginx}

# Every invocation names the same prefix and config as the running master;
# otherwise a reload looks for the pid file in the wrong place.
nginx_cmd() {
    if [ -n "${NGINX_PREFIX:-}" ]; then
        "$nginx_bin" -p "$NGINX_PREFIX" -c "$conf_dir/nginx.conf" "$@"
    else
        "$nginx_bin" -c "$conf_dir/nginx.conf" "$@"
    fi
}

case ${1:-} in
    "")
        "$here/render.sh" "$conf_dir"
        if [ -n "${NGINX_PREFIX:-}" ]; then
            exec "$nginx_bin" -p "$NGINX_PREFIX" -c "$conf_dir/nginx.conf" -g 'daemon off;'
        fi
        exec "$nginx_bin" -c "$conf_dir/nginx.conf" -g 'daemon off;'
        ;;
    switch)
        if [ $# -ne 2 ]; then
            echo "usage: entrypoint.sh switch blue|green" >&2
            exit 2
        fi
        ACTIVE_POOL=$2 "$here/render.sh" "$conf_dir"
        # A reload with a broken config is only logged by the master; check
        # first so that the caller sees the failure.
        nginx_cmd -t -q
        nginx_cmd -s reload
        ;;
    *)
        exec "$@"
        ;;
esac
