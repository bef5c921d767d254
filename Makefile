# Thin wrapper over CMake and the test scripts. `make test` and `make demo` work on a fresh
# Debian 12 machine as root: both install what they need first.
PREFIX ?= /usr/local
CNI_BIN_DIR ?= /opt/cni/bin
CNI_CONF_DIR ?= /etc/cni/net.d
JOBS ?= $(shell nproc)

BUILD := build
BUILD_CLANG := build-clang
BUILD_ASAN := build-asan

.PHONY: all deps build build-clang build-asan test test-unit test-integration demo bench \
        install uninstall package clean format

all: build

deps:
	bash scripts/install-deps.sh

$(BUILD)/build.ninja $(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS)

build-clang:
	CXX=clang++ cmake -S . -B $(BUILD_CLANG) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD_CLANG) -j$(JOBS)

build-asan:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DTETHER_SANITIZE=ON
	cmake --build $(BUILD_ASAN) -j$(JOBS)

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
	bash scripts/install.sh "$(BUILD)" "$(DESTDIR)" "$(CNI_BIN_DIR)" "$(CNI_CONF_DIR)" "$(PREFIX)"

uninstall:
	bash scripts/install.sh --uninstall "" "$(DESTDIR)" "$(CNI_BIN_DIR)" "$(CNI_CONF_DIR)" "$(PREFIX)"

# A Debian package (build/tether-cni-plugins_<version>_amd64.deb) through CPack.
package: build
	cd $(BUILD) && cpack -G DEB

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_CLANG) $(BUILD_ASAN)
