# portcullis — see README.md.
GO      ?= go
BIN     := bin/portcullis
PKGS    := ./...
# Build tags: TAGS=no_kms,no_s3 builds without the KMS clients and the s3 store driver (see
# README, Slim builds). SLIM_TAGS is the slim build that make test checks too.
TAGS    ?=
SLIM_TAGS := no_kms,no_s3

.PHONY: build test unit tools lint bench run demo fuzz clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' -o $(BIN) ./cmd/portcullis

# The real tools the interop tests drive (cosign v2 and v3, crane, distribution's registry,
# skopeo). Built once per machine into $$HOME/.cache/portcullis/tools and linked into bin/.
tools:
	hack/tools.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags $(SLIM_TAGS) ./internal/app ./cmd/portcullis

# Unit, end-to-end and interop tests with the race detector. With CI=true a test whose tool
# is missing fails instead of skipping.
# test/deploy is a module of its own (the Kubernetes API types stay out of go.mod).
test: tools lint
	$(GO) test -race -count=1 -timeout 30m $(PKGS)
	$(GO) test -race -count=1 -tags $(SLIM_TAGS) -run 'TestNoS3Build|TestNoKMSBuild' ./internal/app ./cmd/portcullis
	cd test/deploy && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 10m ./...

# Tests without installing tools (interop tests skip unless CI=true).
unit:
	$(GO) test -race -count=1 $(PKGS)

# Benchmark report: portcullis vs distribution's proxy vs direct upstream access (and
# containers/image, test/bench/cimage, a module of its own), on 127.0.0.1 (see
# test/bench/doc.go). Writes test/bench/results.md and test/bench/summary.md, and puts the
# summary into README.md between the bench:summary markers, so that every figure the README
# shows is from the committed results of one run; then the Go benchmarks, into
# test/bench/gobench.txt, one package at a time (-p 1: go test runs packages in parallel,
# which put two packages' benchmarks on the 2 cores at once). BENCH_BLOB_SIZE=1GiB for the
# large-blob run, BENCH_DURATION=5s for longer warm cells.
BENCH_OUT ?= $(CURDIR)/test/bench/results.md
bench: tools
	PORTCULLIS_BENCH=1 BENCH_OUT=$(BENCH_OUT) $(GO) test -count=1 -run '^TestReport$$' -timeout 60m ./test/bench
	@cat $(BENCH_OUT)
	awk -v f=$(dir $(BENCH_OUT))summary.md 'BEGIN { while ((getline l < f) > 0) s = s l "\n" } \
		/<!-- bench:summary:end -->/ { skip = 0 } !skip { print } \
		/<!-- bench:summary:begin -->/ { printf "%s", s; skip = 1 }' README.md > README.md.tmp && mv README.md.tmp README.md
	$(GO) test -p 1 -run '^$$' -bench . -benchmem $(PKGS) > test/bench/gobench.txt; st=$$?; cat test/bench/gobench.txt; exit $$st

# Each fuzz target for FUZZTIME (go test -fuzz takes one package and one target at a time;
# hack/fuzz.sh retries only Go 1.26's bare end-of-fuzztime deadline report, go.dev/issue/75804).
# Run one for long with e.g. `go test -run '^$$' -fuzz '^FuzzParseRoute$$' -fuzztime 1h ./proxy`.
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 2s
FUZZ_TARGETS := \
	./proxy:FuzzParseRoute \
	./verify/oci:FuzzManifestMediaType \
	./proxy:FuzzParseRange \
	./verify/oci:FuzzNewManifest \
	./verify/oci:FuzzParseDigest \
	./policy:FuzzIsSignatureArtifact \
	./policy:FuzzPolicyMatch \
	./internal/strictjson:FuzzParseObject \
	./internal/strictjson:FuzzFold \
	./verify:FuzzVerify \
	./verify:FuzzHostileSignatures \
	./config:FuzzLoad \
	./proxy/upstream:FuzzNextLink \
	./proxy:FuzzChunkStart \
	./proxy:FuzzSubject \
	./verify:FuzzKeylessBundle \
	./verify:FuzzKeylessLegacy \
	./verify:FuzzLegacyAttestation \
	./verify/trustroot:FuzzParse \
	./verify/trustroot:FuzzReadCertificates \
	./internal/cosign:FuzzParseSignatureTag \
	./policy/predicate:FuzzEval \
	./policy/cip:FuzzTranslateGlob \
	./policy/cip:FuzzConvert
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		GO=$(GO) hack/fuzz.sh $$pkg $$name $(FUZZTIME) $(FUZZMINIMIZETIME); \
	done

run: build
	$(BIN) serve --config portcullis.example.yaml

demo: build
	$(BIN) demo

clean:
	rm -rf bin/portcullis
