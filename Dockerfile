# One image for the whole demo stack: `poolwatch` (the default command) and
# `demo-app`, the upstream app the blue and green pools run.
#
#   docker build -t poolwatch:local .
#   docker run --rm -p 9514:9514 -p 5514:5514/udp poolwatch:local
#   docker run --rm -p 3000:3000 -e APP_POOL=blue poolwatch:local demo-app

# ---- build ----------------------------------------------------------------
# The crate is edition 2024 (Rust 1.85 or newer).
FROM rust:1-bookworm AS build
WORKDIR /build

# Dependencies first, against stub targets at the manifest's paths, so that
# this layer is rebuilt only when Cargo.toml or Cargo.lock change. The bench
# targets are declared in Cargo.toml, so their files must exist too. The
# stubs' fingerprints are removed afterwards: the real sources may carry
# older timestamps than the stub build and would otherwise count as built.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin benches \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/bin/demo-app.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/per_line.rs \
    && echo 'fn main() {}' > benches/memory.rs \
    && cargo build --release --locked --bin poolwatch --bin demo-app \
    && rm -rf src target/release/.fingerprint/poolwatch-*

COPY src ./src
RUN cargo build --release --locked --bin poolwatch --bin demo-app

# ---- runtime --------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: Slack's webhook is HTTPS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged; /run/poolwatch is where a unix socket (UNIX_LISTEN) or a
# maintenance flag file (MAINTENANCE_FILE) can live.
RUN groupadd --system --gid 10001 poolwatch \
    && useradd --system --uid 10001 --gid poolwatch --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin poolwatch \
    && install -d -o poolwatch -g poolwatch -m 0755 /run/poolwatch

COPY --from=build /build/target/release/poolwatch /build/target/release/demo-app /usr/local/bin/

USER poolwatch:poolwatch

# 5514/udp: nginx's syslog datagrams. 9514: poolwatch's /metrics, /healthz,
# /state. 3000: demo-app.
EXPOSE 5514/udp 9514 3000

# poolwatch's /healthz over bash's /dev/tcp (the image has no curl), on the
# port of HTTP_LISTEN. Containers running demo-app define their own check
# (see docker-compose.yml).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "listen=${HTTP_LISTEN:-0.0.0.0:9514}; exec 3<>/dev/tcp/127.0.0.1/${listen##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 3 _ code _ <&3 && [ \"$code\" = 200 ]"]

CMD ["poolwatch"]
