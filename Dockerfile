# methanemap container: built against the official GDAL image, run as a
# non-root user. docker build -t methanemap .
ARG GDAL_IMAGE=ghcr.io/osgeo/gdal:ubuntu-small-3.6.4

FROM golang:1.26-bookworm AS go

FROM ${GDAL_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH CGO_ENABLED=1
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -o /out/methanemap ./cmd/methanemap

FROM ${GDAL_IMAGE} AS ort
ARG ORT_VERSION=1.24.1
ADD https://github.com/microsoft/onnxruntime/releases/download/v${ORT_VERSION}/onnxruntime-linux-x64-${ORT_VERSION}.tgz /tmp/ort.tgz
RUN mkdir -p /out && tar xzf /tmp/ort.tgz -C /tmp \
 && cp -L /tmp/onnxruntime-linux-x64-${ORT_VERSION}/lib/libonnxruntime.so.1 /out/

FROM ${GDAL_IMAGE}
COPY --from=ort /out/libonnxruntime.so.1 /usr/local/lib/methanemap/libonnxruntime.so.1
RUN groupadd --system methanemap \
 && useradd --system --gid methanemap --home-dir /var/lib/methanemap --create-home methanemap
COPY --from=build /out/methanemap /usr/local/bin/methanemap
USER methanemap
WORKDIR /var/lib/methanemap
VOLUME ["/var/lib/methanemap"]
EXPOSE 8080 4222
ENTRYPOINT ["methanemap"]
CMD ["serve"]
