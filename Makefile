# Erdtree developer entry points. Every target works unattended (CI=true, no
# stdin) and installs what it needs first through scripts/install-deps.sh.
#
#   make run       release build, then a local master on 127.0.0.1:8080 and slaves on :8081, :8082 (Ctrl-C stops all)
#   make test      generated-code check, buf lint/format, swift build + test, interop, cluster and release pytest
#   make fuzz      libFuzzer harnesses under ASan, FUZZ_SECONDS each (default 60; Tests/Fuzz/README.md)
#   make bench     release build, then python -m bench (Erdtree vs nghttpd, etcd and Redis; bench/)
#   make generate  regenerate ErdtreeProto from api/
#   make build     debug build;  make release: release build of the erdtree product
#   make clean     remove build products (never ./data or .venv)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

SWIFT ?= swift
VENV := .venv
ERDTREE_BIN ?= $(CURDIR)/.build/debug/erdtree
# Extra pytest arguments, e.g. make test PYTEST_ARGS='-k kvstore -x'.
PYTEST_ARGS ?=
# Per-test guard for the interop suite; slow tests raise their own limit.
PYTEST_TIMEOUT ?= 120

# Swift sources held to .swift-format (NeverForceUnwrap and friends); ErdtreeProto is generated C.
LINTED_SOURCES := Sources/ErdtreeRPC Sources/ErdtreeProtobuf Sources/ErdtreeWAL Sources/ErdtreeStorage Sources/ErdtreeNode Sources/erdtree

.PHONY: run test fuzz bench generate build release clean

build:
	scripts/install-deps.sh build
	$(SWIFT) build

# Release builds skip the run-time exclusivity checks (about 12% of a Get's instructions
# under callgrind); debug builds, which `make test` uses, keep them and catch violations.
RELEASE_FLAGS := -c release -Xswiftc -enforce-exclusivity=unchecked

# A release never holds the test hooks, even from a shell that exported ERDTREE_FAILPOINTS=1
# (Package.swift compiles them in when it is set; tests/release checks the binary).
release:
	scripts/install-deps.sh build
	env -u ERDTREE_FAILPOINTS $(SWIFT) build $(RELEASE_FLAGS) --product erdtree

run: release
	scripts/run-local.sh

# The tests build and run the failpoint variant (ERDTREE_FAILPOINTS=1: crash points and injected
# write errors, see Package.swift); tests/release then builds the release binary as `make release`
# does and checks that it holds none of them. tests/cluster runs master and slaves in network
# namespaces; without root it is skipped, saying why.
test: export ERDTREE_FAILPOINTS := 1
test:
	scripts/install-deps.sh test
	scripts/check-generated.sh
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format --exit-code -d
	$(SWIFT) format lint --strict --recursive $(LINTED_SOURCES)
	$(SWIFT) build
	$(SWIFT) test
	FUZZ_SECONDS=10 scripts/fuzz.sh
	ERDTREE_BIN="$(ERDTREE_BIN)" $(VENV)/bin/python -m pytest tests/interop -q \
		--timeout=$(PYTEST_TIMEOUT) -p no:cacheprovider $(PYTEST_ARGS) </dev/null
	ERDTREE_BIN="$(ERDTREE_BIN)" $(VENV)/bin/python -m pytest tests/cluster -q \
		-p no:cacheprovider $(PYTEST_ARGS) </dev/null
	ERDTREE_BIN="$(ERDTREE_BIN)" $(VENV)/bin/python -m pytest tests/release -q \
		-p no:cacheprovider $(PYTEST_ARGS) </dev/null

# Seeds from Tests/Fuzz/corpus; new inputs and crash artifacts land in .build-fuzz (scripts/fuzz.sh).
FUZZ_SECONDS ?= 60
fuzz:
	scripts/install-deps.sh build
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

bench: release
	scripts/install-deps.sh bench
	ERDTREE_BIN="$(CURDIR)/.build/release/erdtree" $(VENV)/bin/python -m bench

generate:
	scripts/install-deps.sh test
	scripts/generate.sh

clean:
	rm -rf .build tests/interop/__pycache__ tests/interop/.pytest_cache .pytest_cache
