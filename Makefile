# Meridian: `make help` lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

GO          ?= go
BENCH       ?= .
PKGS        ?= ./...
# Tracked and new Go files, without testdata (which may hold deliberately malformed Go).
GOFILES      = git ls-files --cached --others --exclude-standard -- '*.go' ':!:*/testdata/*'

.PHONY: help deps build test test-short lint fmt bench up down

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install PostgreSQL 15 and Redis if missing (apt, as root) and build Consul once
	./scripts/deps.sh

build: ## build every command into bin/
	$(GO) build -o bin/ ./cmd/...

test: ## lint, then every test, integration tests included, against real servers (the CI command)
	./scripts/test.sh

test-short: ## unit tests only: skips everything that needs a real server
	$(GO) test -short $(PKGS)

lint: ## gofmt, go vet, golangci-lint (.golangci.yml), no tracked binaries: what `make test` runs first
	./scripts/lint.sh

fmt: ## format every Go file
	@files="$$($(GOFILES))"; [[ -z "$$files" ]] || gofmt -w $$files

bench: ## run the benchmarks (BENCH=regexp, PKGS=packages), one package at a time
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count=1 -p 1 $(PKGS)

up: ## start the local three-region cluster with demo data (state in .local-cluster/)
	./scripts/up.sh

down: ## stop the local cluster
	./scripts/down.sh
