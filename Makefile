# ngx_http_rate_limit_module
#
#   make demo    install what is missing, build, and show limits at work
#   make run     the same stack, left running until Ctrl-C
#   make test    unit tests (cmocka) and request tests (prove -r t/)
#   make build   only the module: build/ngx_http_rate_limit_module.so
#   make unit    only the unit tests
#   make bench   benchmarks against the baseline and the peers (not a test)
#   make install    install the module as Debian's libnginx-mod-* packages do
#   make uninstall  (both honour DESTDIR; see docs/install.md)
#   make deb        the Debian package libnginx-mod-http-rate-limit, in build/
#   make test-deb   build the package and check it installs, loads, removes
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
