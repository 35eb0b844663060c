# syntax=docker/dockerfile:1
# KillKrill backend image: build with the locked dependencies, run as a non-root user on a
# minimal base. `docker build -t killkrill:latest .`

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src examples && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && echo 'fn main() {}' > examples/bare_hello.rs \
    && cargo build --release --locked --bin killkrill \
    && rm -rf src examples
COPY src ./src
COPY examples ./examples
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin killkrill \
    && cp target/release/killkrill /killkrill

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /killkrill /usr/local/bin/killkrill
USER 65532:65532
WORKDIR /home/nonroot
ENV FLASK_ENV=production \
    FLASK_HOST=0.0.0.0 \
    FLASK_PORT=5000 \
    GRPC_PORT=50051 \
    LOG_LEVEL=INFO \
    WORKERS=0
EXPOSE 5000 50051
# The binary probes itself: the distroless base has no shell and no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/killkrill", "healthcheck", "--path", "/livez"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/killkrill"]
