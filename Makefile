# Gatehouse build, test and CI entry points. See README.md.
SHELL := /usr/bin/env bash
GO    ?= go
BIN   := bin/gatehouse
LAB   ?= ./data
TOOLS := $(GO) tool -modfile=tools/go.mod
# The globalsign estclient command (v1.0.6), an EST interop client, pinned in
# its own tools module so its old dependencies stay out of tools/go.mod.
ESTCLIENT_MOD := tools/estclient/go.mod
# The globalsign estserver command (v1.0.6), the peer of the EST side-by-side
# benchmark (make bench), pinned in its own tools module likewise.
ESTSERVER_MOD := tools/estserver/go.mod
FUZZTIME ?= 10s

.PHONY: all build estclient estserver run test test-deps lint fuzz-smoke bench bench-smoke cover tidy-check ci clean

all: build

build:
	$(GO) build ./...
	$(GO) build -o $(BIN) ./cmd/gatehouse

## estclient: the globalsign EST client (interop peer) into bin/estclient
estclient:
	$(GO) build -modfile=$(ESTCLIENT_MOD) -o bin/estclient github.com/globalsign/est/cmd/estclient

## estserver: the globalsign EST server (benchmark peer) into bin/estserver
estserver:
	$(GO) build -modfile=$(ESTSERVER_MOD) -o bin/estserver github.com/globalsign/est/cmd/estserver

## run: the lab (registrar, MASA and domain CA on loopback, PKI under $(LAB))
run: build
	./$(BIN) lab --data $(LAB)

## test-deps: Debian packages the interop tests call (installed when missing)
test-deps:
	@./scripts/test-deps.sh

## test: every unit, integration and interop test, with the race detector
test: test-deps
	$(GO) test -race -shuffle=on -count=1 ./...

lint:
	$(GO) vet ./...
	$(TOOLS) golangci-lint run ./...

## fuzz-smoke: every fuzz target for $(FUZZTIME)
fuzz-smoke:
	@./scripts/fuzz-smoke.sh $(FUZZTIME)

## bench: every Go benchmark, with allocations, including the EST
## side-by-side against the globalsign estserver (gatehouse/estserver ratios
## are logged); the load generator is `gatehouse bench` (docs/performance.md)
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

## bench-smoke: compile and run each benchmark once (not timed)
bench-smoke:
	$(GO) test -run='^$$' -bench=. -benchtime=1x ./...

cover:
	$(GO) test -coverprofile=cover.out ./... && $(GO) tool cover -func=cover.out | tail -1

tidy-check:
	$(GO) mod tidy -diff
	cd tools && $(GO) mod tidy -diff
	cd tools/estclient && $(GO) mod tidy -diff
	cd tools/estserver && $(GO) mod tidy -diff

ci: tidy-check lint test fuzz-smoke bench-smoke

clean:
	rm -rf bin cover.out
