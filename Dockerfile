# syntax=docker/dockerfile:1
# Build: a release binary, with the dependencies cached in their own layer.
FROM rust:1-slim-bookworm AS build
WORKDIR /src

# 1. Dependencies only. The manifests and lock file, with stand-in sources
#    (an empty library, binary and build script for each workspace member),
#    build every dependency and build-dependency; this layer is rebuilt only
#    when a manifest or Cargo.lock changes, not when src/, proto/ or
#    migrations/ do. Every member's manifest must be here, or Cargo cannot
#    load the workspace (`failed to load manifest for workspace member`);
#    the MCP example is never built, its manifest only keeps Cargo.lock
#    whole for `--locked`. (tessera-bench is found by auto-discovery, so it
#    needs no stand-in for `--bin tessera`.) `.ci/image-context` builds this
#    context as CI's check of the image.
COPY Cargo.toml Cargo.lock ./
COPY client/Cargo.toml client/
COPY wire/Cargo.toml wire/
COPY examples/mcp-rust/Cargo.toml examples/mcp-rust/
RUN mkdir -p src client/src wire/src examples/mcp-rust/src \
 && echo 'fn main() {}' > build.rs \
 && echo 'fn main() {}' > wire/build.rs \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > examples/mcp-rust/src/main.rs \
 && touch src/lib.rs client/src/lib.rs wire/src/lib.rs \
 && cargo build --release --locked --bin tessera \
 && rm -rf build.rs src client/src wire/build.rs wire/src \
    target/release/.fingerprint/tessera-* target/release/build/tessera-* \
    target/release/deps/tessera-* target/release/deps/libtessera-* \
    target/release/deps/tessera_* target/release/deps/libtessera_* \
    target/release/tessera

# 2. The crates themselves: the real build scripts (the wire crate's
#    compiles the protos; migrations are embedded by `sqlx::migrate!`) and
#    sources, the wire's and the client's too (the admin commands,
#    `tessera grants …`, call the server through the client). The
#    stand-ins' fingerprints were removed above, so Cargo rebuilds both
#    whatever the files' mtimes.
COPY build.rs ./
COPY proto proto
COPY migrations migrations
COPY src src
COPY wire/build.rs wire/
COPY wire/src wire/src
COPY client/src client/src
RUN cargo build --release --locked --bin tessera

# Run: a slim base, an unprivileged user (the distroless "nonroot" uid,
# which the Kubernetes manifests in deploy/kubernetes run as), nothing but
# the binary.
FROM debian:bookworm-slim
RUN groupadd --system --gid 65532 tessera \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/tessera --create-home tessera
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
USER 65532:65532
WORKDIR /var/lib/tessera
ENV TESSERA_LISTEN=0.0.0.0:50051
EXPOSE 50051
# `tessera health` reads its --addr from TESSERA_LISTEN when the check runs,
# so the check follows a `-e TESSERA_LISTEN=…` given at `docker run` (on
# Linux, connecting to 0.0.0.0 or [::] reaches the local host). With TLS on,
# also set TESSERA_TLS_CA to the CA that signed the server's certificate,
# and override this check to add `--tls-domain NAME` unless the certificate
# names the listen host.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["tessera", "health", "--service", "tessera.v1.TokenAuthority"]
ENTRYPOINT ["tessera"]
CMD ["serve"]
