# portcullis — see README.md.
GO      ?= go
BIN     := bin/portcullis
PKGS    := ./...

.PHONY: build test unit tools lint bench run demo fuzz clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/portcullis

# The real tools the interop tests drive (cosign v2 and v3, crane, distribution's registry,
# skopeo). Built once per machine into $$HOME/.cache/portcullis/tools and linked into bin/.
tools:
	hack/tools.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Unit, end-to-end and interop tests with the race detector. With CI=true a test whose tool
# is missing fails instead of skipping.
test: tools lint
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

# Tests without installing tools (interop tests skip unless CI=true).
unit:
	$(GO) test -race -count=1 $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

run: build
	$(BIN) serve --config portcullis.example.yaml

demo: build
	$(BIN) demo

clean:
	rm -rf bin/portcullis
