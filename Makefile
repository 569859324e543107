# Gatehouse build, test and CI entry points. See README.md.
SHELL := /usr/bin/env bash
GO    ?= go
BIN   := bin/gatehouse
LAB   ?= ./data
TOOLS := $(GO) tool -modfile=tools/go.mod
FUZZTIME ?= 10s

.PHONY: all build run test test-deps lint fuzz-smoke bench bench-smoke cover tidy-check ci clean

all: build

build:
	$(GO) build ./...
	$(GO) build -o $(BIN) ./cmd/gatehouse

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

ci: tidy-check lint test fuzz-smoke bench-smoke

clean:
	rm -rf bin cover.out
