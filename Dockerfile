# Build: a release binary, with the dependencies cached in their own layer.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY migrations migrations
COPY src src
RUN cargo build --release --locked --bin tessera

# Run: a slim base, an unprivileged user, nothing but the binary.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /var/lib/tessera --create-home tessera
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
USER tessera
WORKDIR /var/lib/tessera
ENV TESSERA_LISTEN=0.0.0.0:50051
EXPOSE 50051
HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD ["tessera", "health", "--service", "tessera.v1.TokenAuthority"]
ENTRYPOINT ["tessera"]
CMD ["serve"]
