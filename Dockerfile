# servicelevel container image.
#
#   docker build -t servicelevel:0.1.0 .
#
# Two stages: a Rust builder, and a distroless runtime that holds only the binary and
# runs as the unprivileged user 65532. The binary writes nothing to disk on Postgres, so
# the container runs with a read-only root filesystem (the Helm chart sets that up).
# SQLite (the embedded default) is for local use only and is not meant for this image.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /build

# 1. Dependencies: this layer is rebuilt only when the manifest, the lock file, the
#    build script or the proto files change. Stub sources stand in for the crate, so
#    every dependency and the build script (which generates the gRPC code from proto/
#    with the protoc vendored by protoc-bin-vendored: no protoc install needed) are
#    compiled here. The bench targets are declared in Cargo.toml, so they need files.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/business_time.rs \
 && echo 'fn main() {}' > benches/ledger.rs \
 && cargo build --release --locked --bin servicelevel \
 && rm -f target/release/servicelevel target/release/deps/servicelevel-*

# 2. The crate itself. Migrations and the policy packs are embedded in the binary at
#    compile time. COPY keeps the files' old modification times, so the two crate roots
#    are touched to make sure cargo rebuilds the crate over the stubs.
COPY migrations ./migrations
COPY policies ./policies
COPY src ./src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin servicelevel \
 && ./target/release/servicelevel --version

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="servicelevel" \
      org.opencontainers.image.description="SLA clocks for support tickets, over gRPC" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /build/target/release/servicelevel /usr/local/bin/servicelevel
USER 65532:65532
# 50051: gRPC (SERVICELEVEL_LISTEN); 9090: Prometheus metrics (SERVICELEVEL_METRICS_LISTEN).
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/servicelevel"]
CMD ["serve"]
