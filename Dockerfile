# syntax=docker/dockerfile:1
#
# kvsz container image: the compiled kvsz binary on distroless (glibc, non-root).
#
#   docker build -t kvsz .
#   docker run --rm -p 9187:9187 -e KVSZ_DEST_PASSWORD \
#     -v "$PWD/kvsz.yaml:/etc/kvsz/kvsz.yaml:ro" kvsz
#
# - The config is read from /etc/kvsz/kvsz.yaml: mount it read-only and keep
#   passwords in environment variables it names (${KVSZ_DEST_PASSWORD}, ...).
# - metrics.listen defaults to 127.0.0.1:9187, which nothing outside the
#   container reaches: set `metrics: {listen: "0.0.0.0:9187"}` in the config
#   (or `listen: ${KVSZ_METRICS_LISTEN:-0.0.0.0:9187}`) to be scraped.
# - Probes: GET /healthz (liveness) and GET /readyz (readiness) on that port.
# - SIGTERM stops gracefully (finish and commit the current batch); give it
#   time: docker stop -t 60, or terminationGracePeriodSeconds: 60.
# - Other subcommands: docker run --rm --entrypoint /kvsz kvsz status
# - Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 .
#   (each platform compiles natively in its build stage).

ARG DENO_VERSION=2.9.6

# --- build: Deno from the npm registry, then `deno task compile` -------------
FROM node:22-bookworm-slim AS build
ARG DENO_VERSION
RUN npm install --global --no-fund --no-audit "deno@${DENO_VERSION}" && deno --version
WORKDIR /src
# Dependencies first, pinned by the lock file, so code changes reuse this layer.
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY main.ts ./
COPY lib ./lib
RUN deno task compile && ./dist/kvsz version

# --- runtime: glibc + libgcc only, user nonroot (65532) ---------------------
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="kvsz" \
      org.opencontainers.image.description="PostgreSQL change data capture: many sources into one destination"
COPY --from=build /src/dist/kvsz /kvsz
COPY config.example.yaml /etc/kvsz/kvsz.example.yaml
USER nonroot:nonroot
EXPOSE 9187
STOPSIGNAL SIGTERM
ENTRYPOINT ["/kvsz", "run"]
