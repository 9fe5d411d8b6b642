# lathe's build, test and benchmark entry points. `make test` and `make run`
# must work on a fresh Debian machine: every tool they need is installed here.

GO ?= go

# Peers (other implementations the tests cross-check against) are required
# under `make test`: a missing peer fails the test instead of skipping it.
export LATHE_REQUIRE_PEERS ?= 1

.PHONY: all build test run bench deps vet fmt-check

all: build

build:
	$(GO) build -o bin/lathe ./cmd/lathe

# deps installs what the tests need beyond Go modules. Each step is skipped
# when what it installs is already present.
deps:
	$(GO) mod download

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: deps fmt-check vet
	$(GO) test -count=1 -timeout 30m ./...

run: build
	./bin/lathe run examples/quickstart

# bench: planning and a no-op rerun of a generated 200-stage pipeline with
# 2 GiB of artifacts (the setup run that creates them is not timed).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 10x ./pipeline/
