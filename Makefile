# Erdtree developer entry points. Every target works unattended (CI=true, no
# stdin) and installs what it needs first through scripts/install-deps.sh.
#
#   make run       release build, then a local master on 127.0.0.1:8080 and slaves on :8081, :8082 (Ctrl-C stops all)
#   make test      generated-code check, buf lint/format, swift build + test, 10 s per fuzz harness, interop, cluster and release pytest, then make test-sanitize
#   make fuzz      libFuzzer harnesses under ASan, FUZZ_SECONDS each (default 60; Tests/Fuzz/README.md)
#   make test-sanitize  swift test under ThreadSanitizer, then AddressSanitizer + LeakSanitizer
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

.PHONY: run test fuzz test-sanitize bench generate build release clean

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
	$(MAKE) --no-print-directory test-sanitize

# Seeds from Tests/Fuzz/corpus; new inputs and crash artifacts land in .build-fuzz (scripts/fuzz.sh).
FUZZ_SECONDS ?= 60
fuzz:
	scripts/install-deps.sh build
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh
# The Swift tests again under each sanitizer, in one scratch path of their own so that the plain
# debug build the interop tests run stays as it is. ERDTREE_SANITIZE (Package.swift) instruments
# only our targets, so the dependencies there are built once, plainly, and each sanitizer
# recompiles only our ~21k lines; `swift test --sanitize=` would instead recompile swift-nio and
# BoringSSL per sanitizer. ERDTREE_TEST_TIME_SCALE stretches the limits that only bound a hang
# (Tests/*/Support/Patience.swift): instrumented code is several times slower.
# TSan's exit status is 66 once it reported anything, which fails the run; the grep also fails it
# should a report come from a process whose status is lost (a crashed child), and
# halt_on_error=0 lists every report in one run. ASan, with LeakSanitizer on, exits non-zero at
# its first error or at exit on any leak; Tests/lsan-suppressions.txt proves each entry false.
# --disable-xctest: the tests are all swift-testing, and an empty XCTest pass costs a process and
# reports XCTest's own objects at exit. --no-parallel: every test shares NIO's two singleton event
# loops and Swift's cooperative pool, and under a sanitizer on a busy 2-core machine one test
# starved another of them for over 12 s (a call that never reached its handler); one at a time
# the whole suite takes no longer (~35 s under TSan), since tests mostly wait on sockets and timers.
# `make test` calls it last: its own scratch path leaves the debug binary the interop tests use
# untouched anyway.
SANITIZE_SCRATCH := .build-sanitize
TSAN_LOG := .build-sanitize-logs/tsan.log
ASAN_LOG := .build-sanitize-logs/asan.log
test-sanitize: export ERDTREE_FAILPOINTS := 1
test-sanitize: export ERDTREE_TEST_TIME_SCALE := 6
test-sanitize:
	scripts/install-deps.sh test
	mkdir -p .build-sanitize-logs
	ERDTREE_SANITIZE=thread TSAN_OPTIONS=halt_on_error=0 \
		$(SWIFT) test --disable-xctest --no-parallel --scratch-path $(SANITIZE_SCRATCH) 2>&1 | tee $(TSAN_LOG)
	! grep -q "WARNING: ThreadSanitizer" $(TSAN_LOG)
	ERDTREE_SANITIZE=address ASAN_OPTIONS=detect_leaks=1 \
		LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/lsan-suppressions.txt \
		$(SWIFT) test --disable-xctest --no-parallel --scratch-path $(SANITIZE_SCRATCH) 2>&1 | tee $(ASAN_LOG)
	! grep -q "ERROR: \(Address\|Leak\)Sanitizer" $(ASAN_LOG)

bench: release
	scripts/install-deps.sh bench
	ERDTREE_BIN="$(CURDIR)/.build/release/erdtree" $(VENV)/bin/python -m bench

generate:
	scripts/install-deps.sh test
	scripts/generate.sh

clean:
	rm -rf .build tests/interop/__pycache__ tests/interop/.pytest_cache .pytest_cache
