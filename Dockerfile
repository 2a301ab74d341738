# A small image of the hub: built in a Rust image, shipped on Debian slim as a non-root user.
#   docker build -t sse-hub .
#   docker run -p 8080:8080 -v sse-hub-data:/var/lib/sse-hub -e SSE_HUB_JWT_KEY=… sse-hub --allow-anonymous

FROM rust:1.90-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sse-hub

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/sse-hub --create-home sse-hub
COPY --from=build /src/target/release/sse-hub /usr/local/bin/sse-hub
USER 10001:10001
WORKDIR /var/lib/sse-hub
# Listen on every interface of the container; keep the durable history in the volume.
ENV SSE_HUB_BIND=0.0.0.0:8080 \
    SSE_HUB_DATA_DIR=/var/lib/sse-hub/history
EXPOSE 8080
VOLUME ["/var/lib/sse-hub"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sse-hub"]
