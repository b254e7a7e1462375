# syntax=docker/dockerfile:1
#
# One image for every WorkUp-RS process. The first argument picks the binary:
#
#   docker build -t workup-rs .
#   docker run workup-rs command-api          # 8080: commands
#   docker run workup-rs query-api            # 8081: queries
#   docker run workup-rs projectors           # 8082: read-model consumers
#   docker run workup-rs relay                # 8083: the outbox relay on its own
#   docker run workup-rs sagas                # 8084: process managers
#   docker run workup-rs withdrawal-worker    # 8085: withdrawal payouts
#   docker run workup-rs payout-provider      # 8086: the simulated payout provider
#   docker run workup-rs control --help       # the operator CLI
#
# Settings are the WORKUP_* environment variables of infra/src/config.rs (README
# "Configuration"). Outside WORKUP_ENV=dev the services refuse to start without
# WORKUP_JWT_SECRET, WORKUP_CONTROL_KEY and WORKUP_MASTER_KEYS.
#
# The SQL migrations are embedded in the binaries (`sqlx::migrate!` in infra/src/ledger/mod.rs):
# every process that opens the ledger runs them at start, under sqlx's advisory lock, so the
# image carries no .sql files. The Swagger UI and the placeholder image are embedded as well.
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.

ARG RUST_VERSION=1

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder

# rdkafka is built with `cmake-build` (librdkafka from source: cmake) and links the system zlib
# (libz-sys, found with pkg-config). No TLS library: reqwest and sqlx are built without TLS,
# librdkafka without its ssl/sasl/curl features and mongodb uses rustls (compiled in), so no
# libssl/libsasl2/libcurl (see Cargo.lock).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Every service binary, release profile, exactly the locked dependency versions. The target
# directory is a cache mount (kept between builds), so the binaries are copied out in the same
# step. The crates and their binaries:
#   command-api: command-api, relay    query-api    projectors    sagas
#   workers: withdrawal-worker         control      payout-provider (tools/)
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p command-api -p query-api -p projectors -p sagas -p workers -p control -p payout-provider \
        --bins \
    && mkdir -p /out \
    && for binary in command-api relay query-api projectors sagas withdrawal-worker control payout-provider; do \
        cp "target/release/$binary" /out/; \
    done

# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# Shared libraries the binaries link (ldd): libz, libgcc_s, libm, libc; ca-certificates for any
# TLS endpoint an operator configures; curl for the HEALTHCHECK.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl zlib1g \
    && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid/gid (10001) so Kubernetes' runAsNonRoot can check it and volumes can be
# given to it (fsGroup). /var/lib/workup/media is the uploads directory command-api writes and
# query-api serves: mount one shared volume there for both.
RUN groupadd --system --gid 10001 workup \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/workup --shell /usr/sbin/nologin workup \
    && mkdir -p /var/lib/workup/media \
    && chown -R 10001:10001 /var/lib/workup

COPY --from=builder /out/ /usr/local/bin/
COPY deploy/docker/entrypoint.sh /usr/local/bin/workup

# Container defaults (each still overridable): listen on every interface (the services default
# to 127.0.0.1, right for the local scripts, unreachable in a container), JSON log lines, the
# media directory above. WORKUP_HEALTH_PORT is only read by the HEALTHCHECK below: set it to the
# port of the binary the container runs (command-api 8080, query-api 8081, projectors 8082,
# relay 8083, sagas 8084, withdrawal-worker 8085, payout-provider 8086).
ENV WORKUP_ENV=production \
    WORKUP_HTTP_HOST=0.0.0.0 \
    WORKUP_RELAY_LISTEN=0.0.0.0:8083 \
    WORKUP_PAYOUT_HOST=0.0.0.0 \
    WORKUP_MEDIA_DIR=/var/lib/workup/media \
    WORKUP_LOG_FORMAT=json \
    RUST_LOG=info \
    WORKUP_HEALTH_PORT=8080

USER 10001:10001
WORKDIR /var/lib/workup
EXPOSE 8080 8081 8082 8083 8084 8085 8086

# Liveness: /health answers while the process serves (readiness, /ready, also checks its
# dependencies: orchestrators probe that separately). Shell form, for ${WORKUP_HEALTH_PORT}.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${WORKUP_HEALTH_PORT}/health" >/dev/null || exit 1

ENTRYPOINT ["/usr/local/bin/workup"]
CMD ["command-api"]
