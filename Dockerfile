# Multi-stage build: a static binary on distroless, running as non-root.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# TAGS=no_kms,no_s3 (docker build --build-arg TAGS=no_kms,no_s3): a slim build without the
# KMS clients and the s3 store driver; README, Slim builds.
ARG TAGS=""
RUN CGO_ENABLED=0 go build -trimpath -tags "$TAGS" -ldflags="-s -w" -o /out/portcullis ./cmd/portcullis \
 && mkdir -p /out/var/lib/portcullis

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/portcullis /usr/local/bin/portcullis
COPY --from=build --chown=nonroot:nonroot /out/var/lib/portcullis /var/lib/portcullis
USER nonroot:nonroot
EXPOSE 5000
VOLUME ["/var/lib/portcullis"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--config", "/etc/portcullis/portcullis.yaml"]
