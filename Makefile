# bettertest: `make demo` runs the main job, `make test` runs the whole suite.
# Both prepare this machine first (Docker engine, base image), idempotently.

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/bettertest/bettertest.Version=$(VERSION)
BIN     := bin/bettertest

.PHONY: all build setup test test-short test-go test-python fuzz demo example-pq bench bench-smoke clean
all: build

# Static (no cgo): enrollment copies this binary to hosts of any distribution.
# bin/vmlab is the same binary: it dispatches on the name it is called by.
build:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/bettertest
	ln -sf bettertest bin/vmlab

setup:
	bash scripts/setup-test-env.sh

test: setup build
	shellcheck -x scripts/*.sh .ci/run
	go vet ./...
	go test -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory test-python

# The pure tests only, in seconds: no setup, no Docker, no binary, no Chromium
# (the integration tests skip under -short, each saying so).
test-short:
	go test -short -count=1 ./...

test-python: build
	cd python && python3 -m unittest discover -s tests -t . -v

# Each fuzz target for a short while; `go test -fuzz` explores further on demand.
fuzz:
	go test ./agent -run '^$$' -fuzz FuzzDecodeRunRequest -fuzztime 30s
	go test ./internal/mask -run '^$$' -fuzz FuzzStream -fuzztime 30s

demo: setup build
	bash scripts/demo.sh

# A real project's pipeline (lib/pq, fetched through the Go module proxy) on a
# worker of its own, cold then warm.
example-pq: setup build
	bash scripts/example-pq.sh

# Every benchmark against its peer; the figures need a quiet machine.
bench: setup build
	bash scripts/bench.sh

# Every benchmark once, on small sizes, no target enforced: CI runs it after
# the tests so that a benchmark that no longer runs fails CI.
bench-smoke: setup build
	bash scripts/bench.sh --smoke

clean:
	rm -rf bin
