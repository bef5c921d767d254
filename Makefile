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
        bench install uninstall package clean format

all: build

deps:
	bash scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(DEV_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)

build-clang:
	CXX=clang++ cmake -S . -B $(BUILD_CLANG) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(DEV_FLAGS)
	cmake --build $(BUILD_CLANG) -j$(JOBS)

build-asan:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DTETHER_SANITIZE=ON $(DEV_FLAGS)
	cmake --build $(BUILD_ASAN) -j$(JOBS)

# The plugins in every standard build type and with Debian's packaging flags, g++ and clang.
build-matrix:
	bash scripts/build-matrix.sh

# Everything: deps, g++ and clang builds, unit + namespace + integration + e2e tests, and the
# same unit and integration tests again against the ASan+UBSan build.
test:
	bash scripts/test.sh

demo: deps build
	bash scripts/demo.sh $(BUILD)

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
	rm -rf $(BUILD) $(BUILD_CLANG) $(BUILD_ASAN) build-matrix
