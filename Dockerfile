# The graft worker image (`graft embed --shard auto`, `graft fit`, `graft cache`).
# It cannot be built in the sandbox this project is developed in (no container engine, no network
# beyond package registries); it follows what scripts/setup-ort.sh does and is kept short.
#
#   docker build -t registry.example.com/graft:0.1 .
#   docker run --rm -v /data:/data -v /cache:/cache registry.example.com/graft:0.1 \
#       graft embed efficientnet-lite0 /data/photos --cache /cache --shard 0/1 --out /cache/parts/0.safetensors

# 1. Build graft (release, the ONNX Runtime library is loaded at run time, not linked).
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/graft

# 2. The ONNX Runtime shared library from the pinned PyPI wheel, checked against its sha256.
FROM python:3.11-slim-bookworm AS ort
COPY scripts/setup-ort.sh /setup-ort.sh
RUN bash /setup-ort.sh --dest /opt/ort

# 3. Slim runtime: the binary, the library, the backbone manifests.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/graft /usr/local/bin/graft
COPY --from=ort /opt/ort /opt/ort
COPY models /opt/graft/models
ENV ORT_DYLIB_PATH=/opt/ort/libonnxruntime.so \
    GRAFT_CACHE=/cache
WORKDIR /opt/graft
ENTRYPOINT []
CMD ["graft", "--help"]
