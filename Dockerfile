# One image for the whole demo stack: `poolwatch` (the default command) and
# `demo-app`, the upstream app the blue and green pools run.
#
#   docker build -t poolwatch:local .
#   docker run --rm -p 9514:9514 -p 5514:5514/udp poolwatch:local
#   docker run --rm -p 3000:3000 -e APP_POOL=blue poolwatch:local demo-app
#
# The base images are build arguments with the official images as defaults.
# Where Docker Hub cannot be reached, build local ones (scripts/stack-images)
# and name them: --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=...
# (docker-compose.yml passes RUST_IMAGE and RUNTIME_IMAGE from .env).

# The crate is edition 2024 (Rust 1.85 or newer).
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- build ----------------------------------------------------------------
# Every target the manifest declares, as cargo itself reads it from the
# whole source tree: a new bin or bench needs no change to this file. This
# stage reruns on any change, but its output changes only with the targets.
FROM ${RUST_IMAGE} AS targets
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo metadata --no-deps --offline --format-version 1 \
        | grep -o '"src_path":"[^"]*"' | cut -d'"' -f4 | sort >/targets

FROM ${RUST_IMAGE} AS build
WORKDIR /build

# Dependencies first, in a layer that only Cargo.toml, Cargo.lock and the
# list of targets invalidate (DECISION.md, "Building the image"): each
# target becomes an empty program (dead code allowed, so the library's
# unused stub warns nothing) and the dependencies are built against
# those. Then the stubs go, with everything built from them: the real
# sources may carry older timestamps than the stub build and would
# otherwise count as built.
COPY Cargo.toml Cargo.lock ./
COPY --from=targets /targets /targets
RUN while read -r path; do \
        mkdir -p "${path%/*}" && echo '#![allow(dead_code)] fn main() {}' >"$path"; \
    done </targets \
    && cargo build --release --locked --bin poolwatch --bin demo-app \
    && xargs rm -f </targets \
    && rm -rf target/release/poolwatch target/release/demo-app \
        target/release/.fingerprint/poolwatch-* target/release/deps/poolwatch-* \
        target/release/deps/libpoolwatch-* target/release/deps/demo_app-*

# The sources, and the bench files the manifest names (cargo checks that
# they exist; they are not built).
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin poolwatch --bin demo-app

# ---- runtime --------------------------------------------------------------
FROM ${RUNTIME_IMAGE}

# ca-certificates: Slack's webhook is HTTPS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged, with a fixed id above the range of system users (so
# useradd creates it without complaint) and of the first human users;
# /run/poolwatch is where a unix socket (UNIX_LISTEN) or a maintenance flag
# file (MAINTENANCE_FILE) can live.
RUN groupadd --gid 10001 poolwatch \
    && useradd --uid 10001 --gid poolwatch --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin poolwatch \
    && install -d -o poolwatch -g poolwatch -m 0755 /run/poolwatch

COPY scripts/container-healthcheck /usr/local/bin/healthcheck
COPY --from=build /build/target/release/poolwatch /build/target/release/demo-app /usr/local/bin/

USER poolwatch:poolwatch

# 5514/udp: nginx's syslog datagrams. 9514: poolwatch's /metrics, /healthz,
# /state. 3000: demo-app.
EXPOSE 5514/udp 9514 3000

# GET /healthz of whichever program the container runs: poolwatch on
# HTTP_LISTEN's port, demo-app on PORT (scripts/container-healthcheck).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/healthcheck"]

CMD ["poolwatch"]
