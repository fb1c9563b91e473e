# syntax=docker/dockerfile:1
# One small static image, two jobs: `serve` (the webhook, the default command) and `wait` (the
# init container the webhook injects, run as `args: [wait]`). Non-root UID/GID 65532.
#
#   docker build -t REGISTRY/gke-wi-injector:TAG .
#
# The binary is built by scripts/build-static.sh, the same script CI runs, so the image and CI
# agree on how it is made (musl target, checked to be static, smoke-run).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, so editing src/ does not refetch crates.
COPY Cargo.toml Cargo.lock ./
COPY scripts/build-static.sh scripts/build-static.sh
COPY .cargo .cargo
COPY benches benches
COPY crates crates
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    STATIC_LIBC=musl scripts/build-static.sh > /tmp/bin-path \
    && install -D -m 0755 "$(tail -n1 /tmp/bin-path)" /out/gke-wi-injector

FROM scratch
# The in-cluster client trusts the cluster CA from its ServiceAccount; the bundle is for anything else.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/gke-wi-injector /gke-wi-injector
USER 65532:65532
EXPOSE 10250 9090
ENTRYPOINT ["/gke-wi-injector"]
CMD ["serve"]
