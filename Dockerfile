# The `dvr` binary in a small, non-root image: `make image`.
#
# Why this shape:
# - Two stages: the Rust toolchain and the build cache stay in the builder;
#   the runtime image holds one binary.
# - Runtime distroless/cc (Debian 12): glibc and libgcc, which a Rust binary
#   built against Debian 12's glibc needs, CA certificates for HTTPS to S3
#   and Swift, no shell, no package manager. The binary links nothing else:
#   TLS is rustls, no OpenSSL (`ldd` shows only libc, libm, libgcc_s).
# - Builder rust:1.95-bookworm: Debian 12 as well, so the glibc the binary
#   was linked against is the one it runs with; the same toolchain the
#   project is built with in CI.
# - User 65532 ("nonroot" in distroless), matching `runAsUser` in the
#   rendered manifests (charts/dvr-deploy/src/render.rs), which also make
#   the root filesystem read-only and mount /var/lib/dvr and /tmp writable.
# - The demo clip is compiled into the binary, so `docker run IMAGE run`
#   works without a config.
# - No dvr-preview-decoder: it links Debian's libavcodec, which distroless
#   does not have, so JPEG previews answer 415 in this image (MP4 previews
#   need no decoder).
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep crates and objects between builds on one engine;
# the binary is copied out of the cached target dir before the step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_TARGET_DIR=/src/target cargo build --release --locked -p dvr \
 && install -D -m 0755 /src/target/release/dvr /out/dvr \
 && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/dvr /usr/local/bin/dvr
# A data directory the non-root user can write when nothing is mounted
# there (`docker run`); on Kubernetes an emptyDir is mounted over it.
COPY --from=build --chown=65532:65532 /out/data /var/lib/dvr
USER 65532:65532
WORKDIR /var/lib/dvr
# The HTTP port: playback, API, /healthz, /readyz, /metrics.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dvr"]
CMD ["run", "--data-dir", "/var/lib/dvr", "--listen", "0.0.0.0:8080"]
