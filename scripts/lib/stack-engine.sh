# shellcheck shell=bash
# A private Docker engine for the stack: Debian's dockerd with its own data
# root, exec root, pid file and socket under $STACK_DIR, on its own bridge,
# never the host's /var/run/docker.sock. Sourced by scripts/stack-test and
# scripts/stack-engine.
#
# dockerd changes the host as it starts: iptables chains and rules,
# net.ipv4.ip_forward, bridge and veth interfaces, cgroups, /run/docker and
# /run/containerd. engine_start records that state first; engine_stop stops
# the engine, removes what it added, and compares: anything left over is
# named and makes it fail.
#
# Needs root. Callers set STACK_DIR (an absolute path) and call engine_init.

engine_init() {
    ENGINE_DIR=$STACK_DIR/engine
    ENGINE_SOCK=$ENGINE_DIR/docker.sock
    ENGINE_PIDFILE=$ENGINE_DIR/docker.pid
    ENGINE_LOG=$ENGINE_DIR/dockerd.log
    ENGINE_DATA=$ENGINE_DIR/data
    ENGINE_EXEC=$ENGINE_DIR/exec
    ENGINE_BEFORE=$ENGINE_DIR/host-before
    ENGINE_BRIDGE=${STACK_BRIDGE:-pwstack0}
    ENGINE_BRIDGE_ADDR=${STACK_BRIDGE_ADDR:-10.213.213.1/24}
    # Debian's client: a newer one earlier in PATH may lack what this
    # engine's API needs (e.g. buildx for BuildKit).
    DOCKER=${DOCKER:-/usr/bin/docker}
    export DOCKER_HOST=unix://$ENGINE_SOCK
    # compose v1 builds through the API (the legacy builder) unless told to
    # use the CLI; say so explicitly so that a user's setting cannot leak in.
    export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0
}

engine_log() { printf 'stack-engine: %s\n' "$*" >&2; }

# The engine's pid, if it runs.
engine_pid() {
    local pid
    [ -f "$ENGINE_PIDFILE" ] || return 1
    pid=$(cat "$ENGINE_PIDFILE" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    # A stale pid file may name an unrelated process now.
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "--exec-root $ENGINE_EXEC " || return 1
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
    echo "$pid"
}

engine_ready() { "$DOCKER" version >/dev/null 2>&1; }

# Host paths dockerd or its containerd create when missing.
ENGINE_HOST_PATHS=(/run/docker /run/containerd /etc/docker/key.json)

# Sysctls dockerd may change.
engine_sysctls() {
    local k
    for k in net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv6.conf.default.forwarding \
        net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
        [ -e "/proc/sys/${k//.//}" ] && echo "$k=$(cat "/proc/sys/${k//.//}")"
    done
    return 0
}

# iptables-save output as the rules that matter: rules in order, user
# chains, and built-in chains whose policy is not ACCEPT. A table with
# nothing else is the same as no table.
engine_rules() {
    local save=$1
    command -v "$save" >/dev/null 2>&1 || return 0
    "$save" 2>/dev/null | awk '
        /^\*/ { t = substr($0, 2); next }
        /^:/ {
            split(substr($0, 2), a, " ")
            if (a[2] == "ACCEPT") next
            print t " chain " a[1] " " a[2]; next
        }
        /^-A / { print t " rule " $0 }
    '
}

engine_links() { ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }

# The cgroups dockerd makes for its containers (cgroupfs driver): a
# `docker` group under each controller, left in place when it stops.
engine_cgroups() { find /sys/fs/cgroup -maxdepth 2 -type d -name docker 2>/dev/null | sort; }

engine_snapshot() {
    local dir=$1 p
    mkdir -p "$dir"
    engine_rules iptables-save >"$dir/iptables"
    engine_rules ip6tables-save >"$dir/ip6tables"
    # The raw saves too, to restore rule by rule.
    iptables-save >"$dir/iptables.save" 2>/dev/null || true
    ip6tables-save >"$dir/ip6tables.save" 2>/dev/null || true
    engine_links >"$dir/links"
    engine_cgroups >"$dir/cgroups"
    engine_sysctls >"$dir/sysctl"
    : >"$dir/paths"
    for p in "${ENGINE_HOST_PATHS[@]}"; do
        [ -e "$p" ] && echo "$p" >>"$dir/paths"
    done
    return 0
}

engine_start() {
    local pid deadline
    if pid=$(engine_pid) && engine_ready; then
        engine_log "already running (pid $pid)"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        engine_log "needs root: it runs dockerd"
        return 1
    fi
    local tool
    for tool in dockerd "$DOCKER" iptables ip; do
        command -v "$tool" >/dev/null 2>&1 || {
            engine_log "$tool not found (Debian packages docker.io, iptables, iproute2)"
            return 1
        }
    done
    # containerd's sockets live in the exec root; unix socket paths are
    # limited to 108 bytes.
    local longest=$ENGINE_EXEC/containerd/containerd.sock.ttrpc
    if [ "${#longest}" -gt 100 ]; then
        engine_log "$ENGINE_EXEC is too long a path for containerd's sockets; set STACK_DIR to a shorter directory"
        return 1
    fi
    # A previous run that could not clean up (killed) left its snapshot:
    # restore against it before taking a new one.
    if [ -d "$ENGINE_BEFORE" ]; then
        engine_log "a previous engine did not stop cleanly; cleaning up after it first"
        engine_stop || return 1
    fi
    if ip link show "$ENGINE_BRIDGE" >/dev/null 2>&1; then
        engine_log "interface $ENGINE_BRIDGE already exists; set STACK_BRIDGE to another name"
        return 1
    fi
    if ip -4 route show to match "${ENGINE_BRIDGE_ADDR%/*}" | grep -v '^default' | grep -q .; then
        engine_log "$ENGINE_BRIDGE_ADDR overlaps a network this host routes to; set STACK_BRIDGE_ADDR (e.g. 10.214.214.1/24)"
        return 1
    fi
    mkdir -p "$ENGINE_DIR" "$ENGINE_DATA" "$ENGINE_EXEC"
    engine_snapshot "$ENGINE_BEFORE"

    # dockerd creates docker0 itself but any other bridge must exist: ours
    # keeps clear of a docker0 another engine on this host may own.
    ip link add "$ENGINE_BRIDGE" type bridge
    ip addr add "$ENGINE_BRIDGE_ADDR" dev "$ENGINE_BRIDGE"
    ip link set "$ENGINE_BRIDGE" up

    # Its own configuration file, so that the host's /etc/docker/daemon.json
    # does not apply, and its key file under the engine directory instead
    # of /etc/docker/key.json.
    cat >"$ENGINE_DIR/daemon.json" <<JSON
{
  "deprecated-key-path": "$ENGINE_DIR/key.json",
  "log-level": "warn"
}
JSON
    : >"$ENGINE_LOG"
    # setsid: a Ctrl-C at the terminal reaches the caller, whose cleanup then
    # stops the engine in order, not the engine directly.
    setsid dockerd \
        --config-file "$ENGINE_DIR/daemon.json" \
        --data-root "$ENGINE_DATA" \
        --exec-root "$ENGINE_EXEC" \
        --pidfile "$ENGINE_PIDFILE" \
        --host "unix://$ENGINE_SOCK" \
        --bridge "$ENGINE_BRIDGE" \
        >>"$ENGINE_LOG" 2>&1 </dev/null &
    ENGINE_CHILD=$!
    deadline=$((SECONDS + 60))
    until engine_ready; do
        if ! kill -0 "$ENGINE_CHILD" 2>/dev/null; then
            engine_log "dockerd exited at start-up; its log ($ENGINE_LOG):"
            tail -n 30 "$ENGINE_LOG" >&2
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            engine_log "dockerd not ready after 60 s; its log ($ENGINE_LOG):"
            tail -n 30 "$ENGINE_LOG" >&2
            return 1
        fi
        sleep 0.2
    done
    return 0
}

# Pids whose command line names the engine's directory (containerd and its
# shims), and dockerd's own children (docker-proxy).
engine_processes() {
    local p cmd dpid=${1:-}
    for p in /proc/[0-9]*; do
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        [ -n "$cmd" ] || continue
        if [[ $cmd == *"$ENGINE_DIR/"* ]] ||
            { [ -n "$dpid" ] && [ "$(awk '{print $4}' "$p/stat" 2>/dev/null)" = "$dpid" ]; }; then
            echo "${p#/proc/}"
        fi
    done
}

# Mount points under the engine directory, deepest first.
engine_mounts() {
    awk -v dir="$ENGINE_DIR/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# Deletes the rules and chains `save` lists now but not in `before` (a raw
# save), and puts built-in policies back.
engine_restore_rules() {
    local cmd=$1 before=$2 now table line chain policy
    command -v "$cmd-save" >/dev/null 2>&1 || return 0
    now=$("$cmd-save" 2>/dev/null) || return 0
    # Rules added since: each occurrence beyond those present before, last
    # first (so that jumps go before the chains they jump to). The first
    # file is told by name, not by `FNR == NR`: on a host with no tables
    # before, the saved file is empty, and every line of the second would
    # count as the first's.
    awk '
        FILENAME == ARGV[1] { if (/^\*/) t = $0; else if (/^-A /) seen[t SUBSEP $0]++; next }
        /^\*/ { t = $0; next }
        /^-A / { if (seen[t SUBSEP $0] > 0) seen[t SUBSEP $0]--; else print substr(t, 2) "\t" $0 }
    ' "$before" <(printf '%s\n' "$now") | tac |
        while IFS=$'\t' read -r table line; do
            eval "$cmd -w -t $table -D ${line#-A }" || engine_log "could not delete ($table) $line"
        done
    # Chains added since, and policies changed.
    awk '
        FILENAME == ARGV[1] { if (/^\*/) t = $0; else if (/^:/) { split($0, a, " "); had[t SUBSEP a[1]] = a[2] }; next }
        /^\*/ { t = $0; next }
        /^:/ {
            split($0, a, " ")
            if (a[2] == "-") { if (!((t SUBSEP a[1]) in had)) print substr(t, 2) "\t" substr(a[1], 2) "\t-" }
            else {
                p = ((t SUBSEP a[1]) in had) ? had[t SUBSEP a[1]] : "ACCEPT"
                if (p != a[2]) print substr(t, 2) "\t" substr(a[1], 2) "\t" p
            }
        }
    ' "$before" <(printf '%s\n' "$now") |
        while IFS=$'\t' read -r table chain policy; do
            if [ "$policy" = - ]; then
                "$cmd" -w -t "$table" -F "$chain" && "$cmd" -w -t "$table" -X "$chain" ||
                    engine_log "could not delete chain ($table) $chain"
            else
                "$cmd" -w -t "$table" -P "$chain" "$policy" || engine_log "could not reset policy ($table) $chain"
            fi
        done
    # Tables that did not exist before and hold nothing now (nf_tables
    # keeps empty tables; nft can remove them).
    if command -v nft >/dev/null 2>&1 && "$cmd" -V 2>/dev/null | grep -q nf_tables; then
        local family=ip
        [ "$cmd" = ip6tables ] && family=ip6
        for table in $("$cmd-save" 2>/dev/null | sed -n 's/^\*//p'); do
            grep -qx "\*$table" "$before" && continue
            if [ -z "$("$cmd-save" -t "$table" 2>/dev/null | grep -E '^-A |^:[^ ]+ -|^:[^ ]+ (DROP|REJECT)')" ]; then
                nft delete table "$family" "$table" 2>/dev/null || true
            fi
        done
    fi
}

# Stops the engine and restores the host. Fails, naming them, if any
# rules, interfaces, sysctls, mounts, processes or paths are left over.
engine_stop() {
    local pid deadline left=0 p
    [ -d "$ENGINE_BEFORE" ] || { engine_pid >/dev/null || return 0; }
    if pid=$(engine_pid); then
        if engine_ready; then
            # Containers first, through the engine, so that it releases
            # their networks, ports and mounts itself.
            local ids
            ids=$("$DOCKER" ps -aq 2>/dev/null || true)
            [ -z "$ids" ] || timeout 120 "$DOCKER" rm -f $ids >/dev/null 2>&1 || true
        fi
        local children
        children=$(engine_processes "$pid")
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 30))
        while [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
            if [ $SECONDS -ge $deadline ]; then
                engine_log "dockerd did not stop within 30 s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
        # Reap it if it is ours.
        [ "${ENGINE_CHILD:-}" = "$pid" ] && wait "$pid" 2>/dev/null || true
        for p in $children; do kill -KILL "$p" 2>/dev/null || true; done
    fi
    for p in $(engine_processes); do
        engine_log "killing leftover process $p: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")"
        kill -KILL "$p" 2>/dev/null || true
    done
    for p in $(engine_mounts); do
        umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true
    done

    [ -d "$ENGINE_BEFORE" ] || return 0
    local before=$ENGINE_BEFORE
    # Interfaces: our bridge, and the bridges and veths of the engine's
    # networks.
    local link
    while read -r link; do
        grep -qx -- "$link" "$before/links" && continue
        case $link in
            "$ENGINE_BRIDGE" | docker0 | br-* | veth*) ip link delete "$link" 2>/dev/null || true ;;
        esac
    done < <(engine_links)
    local group
    while read -r group; do
        grep -qx -- "$group" "$before/cgroups" && continue
        # Only empty groups can go, deepest first.
        find "$group" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done < <(engine_cgroups)
    engine_restore_rules iptables "$before/iptables.save"
    engine_restore_rules ip6tables "$before/ip6tables.save"
    local kv
    while IFS='=' read -r kv _; do
        [ -n "$kv" ] || continue
        sysctl -q -w "$kv=$(grep "^$kv=" "$before/sysctl" | cut -d= -f2)" >/dev/null 2>&1 || true
    done <"$before/sysctl"
    for p in "${ENGINE_HOST_PATHS[@]}"; do
        grep -qx -- "$p" "$before/paths" && continue
        # Only what the engine leaves there: empty directories and sockets.
        [ -e "$p" ] && find "$p" -depth \( -type s -o -type d -empty \) -delete 2>/dev/null
    done

    # Compare.
    local after
    after=$(mktemp -d)
    engine_snapshot "$after"
    local what
    for what in iptables ip6tables links cgroups sysctl paths; do
        if ! diff -u "$before/$what" "$after/$what" >"$after/$what.diff"; then
            engine_log "LEFT BEHIND ($what, - before / + now):"
            sed -n '3,$p' "$after/$what.diff" >&2
            left=1
        fi
    done
    p=$(engine_processes)
    if [ -n "$p" ]; then
        engine_log "LEFT BEHIND (processes): $p"
        left=1
    fi
    p=$(engine_mounts)
    if [ -n "$p" ]; then
        engine_log "LEFT BEHIND (mounts): $p"
        left=1
    fi
    rm -rf "$after"
    if [ $left -ne 0 ]; then
        engine_log "the host is not as it was before the engine started (see above)"
        return 1
    fi
    rm -rf "$before"
    return 0
}
