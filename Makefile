# ngx_http_rate_limit_module
#
#   make demo    install what is missing, build, and show limits at work
#   make run     the same stack, left running until Ctrl-C
#   make test    unit tests (cmocka), a short fuzz run, request tests
#                (prove -r t/)
#   make build   only the module: build/ngx_http_rate_limit_module.so
#   make unit    only the unit tests
#   make bench   benchmarks against the baseline and the peers (not a test)
#   make install    install the module as Debian's libnginx-mod-* packages do
#   make uninstall  (both honour DESTDIR; see docs/install.md)
#   make deb        the Debian package libnginx-mod-http-rate-limit, in build/
#   make test-deb   build the package and check it installs, loads, removes
#   make test-asan  the whole suite with the module under ASan and UBSan
#   make test-valgrind  the fault tests with nginx under valgrind
#   make fuzz       the libFuzzer targets of t/fuzz (make test runs them
#                   briefly)
#   make clean
#
# NGINX_SRC=/path/to/nginx-x.y.z builds against a full source tree instead of
# Debian's nginx-dev (see docs/install.md).

BUILD      ?= build
MODULE     := $(BUILD)/ngx_http_rate_limit_module.so

CORE_SRCS  := src/rl_config.cpp src/rl_limit.cpp src/rl_metrics.cpp \
              src/rl_script.cpp \
              src/rl_redis_client.cpp
CORE_HDRS  := $(wildcard src/*.h src/*.hpp)
UNIT_DIR   := $(BUILD)/unit

# the core's own build is stricter than nginx's (-Wextra); SANITIZE=1 adds
# AddressSanitizer and UBSan
UNIT_FLAGS := -g -O1 -Wall -Wextra -Werror -Isrc -It/unit
ifeq ($(SANITIZE),1)
UNIT_FLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer
endif
UNIT_LIBS  := -lcmocka -lhiredis -levent

.PHONY: all deps build unit unit-build tools test demo run bench clean
.SECONDARY:

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@scripts/build-module.sh $(BUILD)

$(UNIT_DIR)/%.o: src/%.cpp $(CORE_HDRS)
	@mkdir -p $(UNIT_DIR)
	g++ -std=c++17 $(UNIT_FLAGS) -c -o $@ $<

$(UNIT_DIR)/rl_event_loop.o: t/unit/rl_event_loop.cpp t/unit/rl_event_loop.h $(CORE_HDRS)
	@mkdir -p $(UNIT_DIR)
	g++ -std=c++17 $(UNIT_FLAGS) -c -o $@ $<

$(UNIT_DIR)/test_%.o: t/unit/test_%.c $(CORE_HDRS) t/unit/rl_event_loop.h
	@mkdir -p $(UNIT_DIR)
	gcc -std=c11 -D_GNU_SOURCE $(UNIT_FLAGS) -c -o $@ $<

UNIT_CORE_OBJS := $(patsubst src/%.cpp,$(UNIT_DIR)/%.o,$(CORE_SRCS)) \
                  $(UNIT_DIR)/rl_event_loop.o

$(UNIT_DIR)/test_%: $(UNIT_DIR)/test_%.o $(UNIT_CORE_OBJS)
	g++ $(UNIT_FLAGS) -o $@ $^ $(UNIT_LIBS)

UNIT_TESTS := $(patsubst t/unit/%.c,$(UNIT_DIR)/%,$(wildcard t/unit/test_*.c))

unit-build: deps $(UNIT_TESTS)

# test peers (t/tools/*.c, one program each, on libevent)
TOOLS := $(patsubst t/tools/%.c,$(BUILD)/tools/%,$(wildcard t/tools/*.c))

$(BUILD)/tools/%: t/tools/%.c
	@mkdir -p $(BUILD)/tools
	gcc -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -o $@ $< -levent

tools: deps $(TOOLS)

# unit tests on their own start a redis-server of their own
unit: unit-build
	@scripts/run-tests.sh unit

test: build unit-build tools
	@scripts/run-tests.sh all

demo: build
	@scripts/demo.sh

run: build
	@scripts/demo.sh --keep

bench: build
	@scripts/bench.sh

clean:
	rm -rf $(BUILD)

# Installation and packaging (docs/install.md). make install lays the module
# out as Debian's libnginx-mod-* packages do; DESTDIR, NGINX_MODULES_DIR,
# NGINX_MODULES_AVAILABLE, NGINX_MODULES_ENABLED: see scripts/install.sh.
# NGINX_SRC (a full nginx source tree) reaches scripts/build-module.sh.
export NGINX_SRC

.PHONY: install uninstall deb test-deb

install: build
	@scripts/install.sh install $(MODULE)

uninstall:
	@scripts/install.sh uninstall

deb:
	@scripts/deb.sh $(BUILD)

test-deb: deps deb
	@scripts/test-deb.sh $(BUILD)

# Memory checkers and fuzzing (issue #3); none of them touches $(BUILD)'s
# own module.
#
#   make test-asan      the module, the unit tests and the test peers built
#                       with AddressSanitizer and UBSan in $(ASAN_BUILD);
#                       the unit tests and the whole t/ suite (ASAN_TESTS=
#                       for fewer files) with the stock nginx running the
#                       sanitized module; fails on any report
#   make test-valgrind  the fault tests (VALGRIND_TESTS) with nginx, master
#                       and workers, under valgrind's memcheck; fails on
#                       valgrind's reports (VALGRIND_STRICT=1: and on the
#                       tests' time bounds, too tight for valgrind)
#   make fuzz           each libFuzzer target of t/fuzz/ for FUZZ_TIME
#                       seconds (clang), from a new random seed each time;
#                       make test runs them FUZZ_SMOKE_TIME seconds each
#                       from the fixed FUZZ_SMOKE_SEED, so that it explores
#                       the same inputs on every machine and a failure
#                       there is one that replays, not a lucky draw
ASAN_BUILD      ?= $(BUILD)/asan
ASAN_TESTS      ?=
ASAN_FLAGS      := -fsanitize=address,undefined -fno-omit-frame-pointer
VALGRIND_BUILD  ?= $(BUILD)/valgrind
VALGRIND_TESTS  ?= t/005-fallback.t t/007-faults.t

FUZZ_DIR        ?= $(BUILD)/fuzz
FUZZ_TIME       ?= 20
FUZZ_SMOKE_TIME ?= 6
FUZZ_SMOKE_SEED ?= 1
FUZZ_CXX        ?= clang++
FUZZ_FLAGS      := -std=c++17 -g -O1 -Isrc -fno-omit-frame-pointer \
                   -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CORE       := src/rl_config.cpp src/rl_limit.cpp src/rl_metrics.cpp \
                   src/rl_script.cpp
FUZZ_CORE_OBJS  := $(patsubst src/%.cpp,$(FUZZ_DIR)/obj/%.o,$(FUZZ_CORE))
FUZZERS         := $(patsubst t/fuzz/%.cpp,$(FUZZ_DIR)/%,\
                   $(wildcard t/fuzz/fuzz_*.cpp))

.PHONY: asan-build test-asan valgrind-build test-valgrind fuzz-build fuzz \
        fuzz-smoke

asan-build: deps
	@NGX_CC_OPT='$(ASAN_FLAGS)' NGX_LD_OPT='-fsanitize=address,undefined' \
	    scripts/build-module.sh $(ASAN_BUILD)
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) SANITIZE=1 \
	    unit-build tools

test-asan: asan-build
	@scripts/test-asan.sh $(ASAN_BUILD) $(ASAN_TESTS)

valgrind-build: deps
	@scripts/build-module.sh $(VALGRIND_BUILD)
	@$(MAKE) --no-print-directory BUILD=$(VALGRIND_BUILD) tools

test-valgrind: valgrind-build
	@scripts/test-valgrind.sh $(VALGRIND_BUILD) $(VALGRIND_TESTS)

$(FUZZ_DIR)/obj/%.o: src/%.cpp $(CORE_HDRS)
	@mkdir -p $(FUZZ_DIR)/obj
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: t/fuzz/fuzz_%.cpp $(FUZZ_CORE_OBJS) $(CORE_HDRS)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_CORE_OBJS) \
	    -lhiredis

fuzz-build: deps $(FUZZERS)

fuzz: fuzz-build
	@scripts/fuzz.sh $(FUZZ_DIR) $(FUZZ_TIME)

# a short run of every target, part of make test
fuzz-smoke: fuzz-build
	@echo "== fuzz targets, $(FUZZ_SMOKE_TIME) s each"
	@FUZZ_SEED=$(FUZZ_SMOKE_SEED) scripts/fuzz.sh $(FUZZ_DIR) \
	    $(FUZZ_SMOKE_TIME)

test: fuzz-smoke
