# Erdtree developer entry points. Every target works unattended (CI=true, no
# stdin) and installs what it needs first through scripts/install-deps.sh.
#
#   make run       release build, then a local master on 127.0.0.1:8080 and slaves on :8081, :8082 (Ctrl-C stops all)
#   make test      generated-code check, buf lint/format, swift build + test, interop, cluster and release pytest
#   make test-sanitize  swift test under ThreadSanitizer, then under AddressSanitizer (not yet in make test)
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
LINTED_SOURCES := Sources/ErdtreeSync Sources/ErdtreeRPC Sources/ErdtreeProtobuf Sources/ErdtreeWAL Sources/ErdtreeStorage Sources/ErdtreeNode Sources/erdtree

.PHONY: run test test-sanitize bench generate build release clean

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
	ERDTREE_BIN="$(ERDTREE_BIN)" $(VENV)/bin/python -m pytest tests/interop -q \
		--timeout=$(PYTEST_TIMEOUT) -p no:cacheprovider $(PYTEST_ARGS) </dev/null
	ERDTREE_BIN="$(ERDTREE_BIN)" $(VENV)/bin/python -m pytest tests/cluster -q \
		-p no:cacheprovider $(PYTEST_ARGS) </dev/null
	ERDTREE_BIN="$(ERDTREE_BIN)" $(VENV)/bin/python -m pytest tests/release -q \
		-p no:cacheprovider $(PYTEST_ARGS) </dev/null

# The Swift tests again under each sanitizer, each in its own scratch path so that neither
# rebuilds the other's products or the plain build's. TSan's exit status is 66 once it reported
# anything, which fails the run; the grep also fails it should a report come from a process whose
# status is lost (a crashed child), and halt_on_error=0 lists every report in one run.
# ASan (with LeakSanitizer) stops at its first error with a non-zero status.
# Not yet part of `make test`, which it would fail: under TSan on a busy 2-core machine about 40
# tests overrun their 5 s client deadlines, LeakSanitizer reports channels and timers the tests
# never close, and each sanitizer's first build takes about 30 minutes there (issue 18).
TSAN_LOG := .build-tsan/test-sanitize.log
test-sanitize: export ERDTREE_FAILPOINTS := 1
test-sanitize:
	scripts/install-deps.sh test
	mkdir -p .build-tsan
	TSAN_OPTIONS=halt_on_error=0 $(SWIFT) test --sanitize=thread --scratch-path .build-tsan 2>&1 | tee $(TSAN_LOG)
	! grep -q "WARNING: ThreadSanitizer" $(TSAN_LOG)
	$(SWIFT) test --sanitize=address --scratch-path .build-asan

bench: release
	scripts/install-deps.sh bench
	ERDTREE_BIN="$(CURDIR)/.build/release/erdtree" $(VENV)/bin/python -m bench

generate:
	scripts/install-deps.sh test
	scripts/generate.sh

clean:
	rm -rf .build tests/interop/__pycache__ tests/interop/.pytest_cache .pytest_cache
