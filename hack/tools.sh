#!/usr/bin/env bash
# Installs the pinned real tools the interop tests use into a cache outside the clone
# ($PORTCULLIS_TOOLS, default $HOME/.cache/portcullis/tools/<name>-<version>/) and links them
# into ./bin. A tool already built is reused, so a fresh clone on the same machine costs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${PORTCULLIS_TOOLS:-$HOME/.cache/portcullis/tools}
mkdir -p bin "$cache"

# name  module@version  binary-name-in-bin
tools=(
  "crane-v0.22.1 github.com/google/go-containerregistry/cmd/crane@v0.22.1 crane"
  "registry-v3.1.2 github.com/distribution/distribution/v3/cmd/registry@v3.1.2 registry"
  "cosign-v3.1.3 github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3 cosign3"
  "cosign-v2.6.5 github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5 cosign2"
  # The local sigstore stack the keyless tests start (Rekor v2 on POSIX storage, no database).
  "fulcio-v1.8.8 github.com/sigstore/fulcio@v1.8.8 fulcio"
  "timestamp-server-v2.1.3 github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server@v2.1.3 timestamp-server"
  "rekor-tiles-posix-v2.3.0 github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix@v2.3.0 rekor-tiles"
  "tesseract-posix-v0.1.1 github.com/transparency-dev/tesseract/cmd/tesseract/posix@v0.1.1 tesseract"
  # A real AWS KMS API (an emulator of KMS's JSON protocol) for the awskms:// end-to-end test.
  "local-kms-v0.0.0-20260228092603 github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6 local-kms"
  # Renders deploy/helm/portcullis for test/deploy (v3.21.4: go directive 1.26.0).
  "helm-v3.21.4 helm.sh/helm/v3/cmd/helm@v3.21.4 helm"
  # A real S3 server for the s3 storage driver's tests (the newest MinIO, go directive 1.24.0;
  # AGPL-3.0: run as a separate test server, never linked into portcullis).
  "minio-v0.0.0-20260212201848 github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c minio"
)
only=("$@")
for t in "${tools[@]}"; do
  read -r dir mod name <<<"$t"
  if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " == *" $name "* ]]; then continue; fi
  base=${mod%@*}; exe=${base##*/}
  if [ ! -x "$cache/$dir/$exe" ]; then
    echo "tools: building $mod (once per machine)" >&2
    GOBIN="$cache/$dir.tmp" CGO_ENABLED=0 go install "$mod"
    rm -rf "$cache/$dir" && mv "$cache/$dir.tmp" "$cache/$dir"
  fi
  ln -sf "$cache/$dir/$exe" "bin/$name"
done

# The OCI distribution-spec conformance suite is a test binary: build it in a scratch module.
conf_version=v0.0.0-20260831232431-97274622c111
if [ ${#only[@]} -eq 0 ] || [[ " ${only[*]} " == *" oci-conformance "* ]]; then
  dir="$cache/oci-conformance-$conf_version"
  if [ ! -x "$dir/conformance.test" ]; then
    echo "tools: building the OCI conformance suite $conf_version (once per machine)" >&2
    scratch=$(mktemp -d)
    (cd "$scratch" && printf 'module conformancebuild\n\ngo 1.26\n' > go.mod \
      && go get "github.com/opencontainers/distribution-spec/conformance@$conf_version" \
      && go test -c -o conformance.test github.com/opencontainers/distribution-spec/conformance)
    mkdir -p "$dir" && mv "$scratch/conformance.test" "$dir/" && rm -rf "$scratch"
  fi
  ln -sf "$dir/conformance.test" bin/oci-conformance
fi

# Pulling clients from Debian: skopeo and podman (registries.conf) and containerd (hosts.toml);
# redis-server for the shared decision tier (cache/redistier, test/fleet).
if [ ${#only[@]} -eq 0 ] || [[ " ${only[*]} " == *" skopeo "* ]] || [[ " ${only[*]} " == *" podman "* ]] || [[ " ${only[*]} " == *" containerd "* ]] || [[ " ${only[*]} " == *" redis-server "* ]]; then
  missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v podman >/dev/null || missing+=(podman)
  command -v containerd >/dev/null && command -v ctr >/dev/null || missing+=(containerd)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "tools: installing ${missing[*]} from Debian" >&2
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
