# Thin wrapper over CMake and the test scripts. `make test` and `make demo` work on a fresh
# Debian 12 machine as root: both install what they need first.
PREFIX ?= /usr/local
CNI_BIN_DIR ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
# make install DEBUG_DIR=/usr/lib/debug: also the plugins' detached debug info (.build-id layout).
DEBUG_DIR ?=
JOBS ?= $(shell nproc)
# The project's own builds treat warnings as errors; a plain `cmake` does not (TETHER_WERROR).
DEV_FLAGS := -DTETHER_WERROR=ON

BUILD := build
BUILD_CLANG := build-clang
BUILD_ASAN := build-asan

.PHONY: all deps build build-clang build-asan build-matrix test test-unit test-integration demo \
        bench install uninstall package clean format fuzz tidy soak

all: build

deps:
	bash scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(DEV_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)

build-clang:
	CXX=clang++ cmake -S . -B $(BUILD_CLANG) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(DEV_FLAGS)
	cmake --build $(BUILD_CLANG) -j$(JOBS)

# ASan+UBSan with clang, as make test builds it.
build-asan:
	CXX=clang++ cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_SANITIZE=ON $(DEV_FLAGS)
	cmake --build $(BUILD_ASAN) -j$(JOBS)

# The plugins in every standard build type and with Debian's packaging flags, g++ and clang.
build-matrix:
	bash scripts/build-matrix.sh

# Everything: deps, the g++ build with unit, namespace, etcd, integration, multi-host and e2e
# tests, the same tests again against the clang ASan+UBSan build, then the build matrix.
test:
	bash scripts/test.sh

# libFuzzer on every target of tests/fuzz (clang, build-fuzz), FUZZ_SECONDS each (default 600):
# executions, coverage and crashes per target (tests/fuzz/README.md). `make test` replays the
# committed corpora and regressions in its ASan+UBSan build in seconds.
fuzz:
	bash scripts/fuzz.sh

# clang-tidy with .clang-tidy's short list of bug-finding checks, every file of common/ and
# plugins/; make test runs it too.
tidy:
	bash scripts/tidy.sh

# The DNS daemon's soak (tests/soak/soak.py): SOAK_MINUTES of mixed queries and SOAK_CYCLES
# container ADD/DEL cycles through the real chain, the daemon's RSS and fds sampled: flat.
# `make test` runs 2 minutes of it.
SOAK_MINUTES ?= 30
SOAK_CYCLES ?= 1000
soak: deps build
	SOAK_MINUTES=$(SOAK_MINUTES) SOAK_CYCLES=$(SOAK_CYCLES) TETHER_BIN_DIR=$(CURDIR)/$(BUILD)/bin \
	  /usr/bin/python3 tests/soak/soak.py

demo: deps build
	bash scripts/demo.sh $(BUILD)
	bash scripts/demo-hosts.sh $(BUILD)

# Side by side with the reference plugins and netavark (docs/benchmarks.md); QUICK=1 for a smoke
# run of a few minutes (results in build/bench-quick), LONG=1 to take every side to 1,000.
bench: deps build
	bash bench/run.sh $(BUILD) $(if $(QUICK),--quick) $(if $(LONG),--long)

install: build
	DEBUG_DIR="$(DEBUG_DIR)" bash scripts/install.sh "$(BUILD)" "$(DESTDIR)" "$(CNI_BIN_DIR)" "$(CNI_CONF_DIR)" "$(PREFIX)"

uninstall:
	DEBUG_DIR="$(DEBUG_DIR)" bash scripts/install.sh --uninstall "" "$(DESTDIR)" "$(CNI_BIN_DIR)" "$(CNI_CONF_DIR)" "$(PREFIX)"

# Debian packages through CPack: build/tether-cni-plugins_<version>_amd64.deb (stripped) and
# build/tether-cni-plugins-dbgsym_<version>_amd64.ddeb (the debug info, .build-id layout).
package: build
	cd $(BUILD) && cpack -G DEB

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_CLANG) $(BUILD_ASAN) build-matrix build-fuzz build-tidy
