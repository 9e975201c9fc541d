# luagent: a memcached routing proxy with LuaJIT policies.
#
#   make            build ./luagent
#   make run        start two local memcached servers and luagent in front of them
#   make test       the include-floor check and unit tests, then integration tests
#                   and the real-client suite
#   make bench      side-by-side benchmark (see docs/performance.md)
#   make fuzz       libFuzzer targets, FUZZ_SECONDS (60) each (tests/fuzz/)
#   make flaky      the integration suite FLAKY_RUNS (3) times beside a busy loop per core
#   make install    PREFIX=/usr/local DESTDIR= (binary, Lua library, examples, man page)
#   make deb        Debian package in DEB_DIR (build/deb), built from a copy of the tree
#   make deps       install everything any target needs (scripts/deps.sh)
#   make clean
#
# Each target first installs the Debian packages it needs that are missing
# (scripts/deps.sh; root is needed only when something is missing).
#
# V=1 shows full commands; SAN=1 builds with AddressSanitizer and UBSan.

.DEFAULT_GOAL := all

.PHONY: deps clean
deps:
	@sh scripts/deps.sh

clean:
	rm -rf build build-san build-fuzz luagent

# Every target that builds first runs scripts/deps.sh (which installs what is
# missing), then runs again in a second make that reads the package flags with
# pkg-config: read before the packages are installed, they would be empty and
# the first build would fail. Variables given on the command line (SAN=1, V=1,
# LTO=, CFLAGS=...) reach the second make through MAKEFLAGS.
ifndef LUAGENT_DEPS_READY

# The purpose scripts/deps.sh installs for, per target (build by default).
DEPS_run   = run
DEPS_test  = test
DEPS_unit  = test
DEPS_integration = test
DEPS_replay = test
DEPS_flaky = test
DEPS_bench = bench
DEPS_fuzz  = fuzz
DEPS_deb   = deb
deps_for   = $(or $(DEPS_$(1)),build)

.PHONY: all run test unit replay integration flaky bench fuzz install deb
all run test unit replay integration flaky bench fuzz install deb:
	@sh scripts/deps.sh $(call deps_for,$@)
	@$(MAKE) --no-print-directory LUAGENT_DEPS_READY=1 $@

# Any other target (./luagent, build/tests/test_proto, ...) goes the same way.
.PHONY: FORCE
FORCE:
Makefile scripts/deps.sh: ;
%: FORCE
	@sh scripts/deps.sh build
	@$(MAKE) --no-print-directory LUAGENT_DEPS_READY=1 $@

else

CC       ?= cc
CFLAGS   ?= -O2 -g
# Link-time optimisation lets the small accessors of one module (proto, buf,
# ring) inline into the request path of another: about 7% fewer instructions
# per multi-get key under callgrind.
LTO      ?= -flto=auto
PYTHON   ?= /usr/bin/python3
WARN      = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
DEPFLAGS  = -MMD -MP
PKGS      = libevent luajit openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(LTO) -Iinclude $(PKG_CFLAGS) $(DEPFLAGS)
LIBS       = $(PKG_LIBS) -lpthread -lm

ifeq ($(SAN),1)
  CFLAGS  = -O1 -g -fno-omit-frame-pointer
  LTO      =
  ALL_CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
  BUILD    = build-san
else
  BUILD    = build
endif

ifeq ($(V),1)
  Q =
  say = @true
else
  Q = @
  say = @printf '  %-6s %s\n'
endif

SRCS  = $(wildcard src/*.c)
OBJS  = $(SRCS:src/%.c=$(BUILD)/%.o) $(BUILD)/embedded.o
EMBEDDED = lua/luagent.lua examples/default.lua
BIN   = luagent

# Unit tests: tests/unit/test_X.c links only the pure modules it names here.
UNIT_test_ketama = ketama md5 hash
UNIT_test_hash   = hash md5
UNIT_test_proto  = proto base64 reply
UNIT_test_binproto = binproto
UNIT_test_binreply = binreply binproto buf
UNIT_test_base64 = base64
UNIT_test_dnsmsg = dnsmsg
UNIT_test_reply  = reply
UNIT_test_dcache = dcache
UNIT_test_rejoin = rejoin
UNIT_test_ttl    = ttl proto base64
UNIT_test_ratelimit = ratelimit
UNIT_test_hotkeys = hotkeys
UNIT_test_nearcache = nearcache hotkeys buf
UNIT_test_histogram = histogram
UNIT_test_statsreply = statsreply reply
UNIT_test_buf    = buf
UNIT_test_remap  = remap ketama md5 hash
UNIT_test_statuspage = statuspage buf histogram
UNIT_test_timer  = timer
UNIT_LIBS_test_timer = $(shell pkg-config --libs libevent 2>/dev/null)
# test_trial runs the whole loader, and is its own trial child; the wrap lets
# it freeze a lock in another thread (see the test).
UNIT_test_trial  = $(filter-out main,$(SRCS:src/%.c=%)) embedded
UNIT_LIBS_test_trial = $(LIBS) -Wl,--wrap=pthread_mutex_unlock,--wrap=waitpid
# test_respond makes a buffer's growth fail (out of memory) through the
# linker's --wrap=realloc, which calls inside LTO objects do not see: it
# links objects built without LTO (build/nolto/).
UNIT_test_respond = $(addprefix nolto/,respond request log buf proto base64 reply binreply binproto)
UNIT_LIBS_test_respond = -Wl,--wrap=realloc
NOLTO_OBJS = $(addprefix $(BUILD)/,$(addsuffix .o,$(UNIT_test_respond)))
UNIT_test_route  = route balance request respond config tls dcache hotkeys nearcache hash ketama md5 log buf \
                   proto base64 reply binreply binproto coalesce ttl ratelimit hedge timer
UNIT_LIBS_test_route = $(shell pkg-config --libs openssl libevent 2>/dev/null)
UNIT_test_sim    = sim route balance backend rejoin histogram request respond config tls dcache hotkeys nearcache \
                   hash ketama md5 log buf proto base64 reply binreply binproto coalesce ttl ratelimit hedge timer
UNIT_LIBS_test_sim = $(LIBS)
UNITS = $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
UNIT_BINS = $(UNITS:%=$(BUILD)/tests/%)

.PHONY: all run test unit replay integration flaky bench fuzz install deb
all: $(BIN)

# ./luagent is relinked when switching between normal and SAN=1 builds.
MODE_FILE := .build-mode
$(shell echo "$(BUILD)" | cmp -s - $(MODE_FILE) 2>/dev/null || echo "$(BUILD)" > $(MODE_FILE))

$(BIN): $(OBJS) $(MODE_FILE)
	$(say) LINK $@
	$(Q)$(CC) $(LTO) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

$(BUILD)/%.o: src/%.c | $(BUILD)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Kept, and remade when their sources change (not intermediate files).
.SECONDARY: $(NOLTO_OBJS)
$(BUILD)/nolto/%.o: src/%.c | $(BUILD)/nolto
	$(say) CC $<
	$(Q)$(CC) $(filter-out $(LTO),$(ALL_CFLAGS)) -c -o $@ $<

# The Lua library and the default policy travel inside the binary.
$(BUILD)/embedded.c: $(EMBEDDED) scripts/embed.sh | $(BUILD)
	$(say) EMBED $(EMBEDDED)
	$(Q)sh scripts/embed.sh embedded_luagent lua/luagent.lua \
	    embedded_default_policy examples/default.lua > $@

$(BUILD)/embedded.o: $(BUILD)/embedded.c
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# make bench's load generator (scripts/bench.sh builds it).
$(BUILD)/loadgen: bench/loadgen.c bench/tool.h | $(BUILD)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< -lpthread $(shell pkg-config --libs openssl)

# The hot-key benchmark's server of fixed capacity (scripts/bench-hot.sh builds it).
$(BUILD)/capserver: bench/capserver.c bench/tool.h | $(BUILD)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $<

# The kernel's floor for passing a value on (scripts/bench.sh builds it).
$(BUILD)/relayfloor: bench/relayfloor.c bench/tool.h | $(BUILD)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $<

# build/ can exist without build/tests (scripts/deps.sh keeps the npm clients
# in build/clients), so the unit tests ask for their own directory.
$(BUILD) $(BUILD)/tests $(BUILD)/nolto:
	@mkdir -p $@

.SECONDEXPANSION:
$(BUILD)/tests/%: tests/unit/%.c $$(addprefix $(BUILD)/,$$(addsuffix .o,$$(UNIT_$$*))) | $(BUILD)/tests
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(UNIT_LIBS_$*) -lm

unit: $(UNIT_BINS)
	@sh scripts/layers.sh || { echo "FAIL: scripts/layers.sh (includes against the floors of docs/design.md)"; exit 1; }
	@printf '  %-28s %s\n' layers.sh "includes follow the floors of docs/design.md"
	@luajit tests/lua/test_luagent.lua > $(BUILD)/tests/test_luagent.log 2>&1 || \
	    { grep -v '^ok' $(BUILD)/tests/test_luagent.log; echo "FAIL: tests/lua/test_luagent.lua"; exit 1; }
	@printf '  %-28s %s\n' test_luagent.lua "$$(tail -n 1 $(BUILD)/tests/test_luagent.log)"
	@for t in $(UNIT_BINS); do \
	    $$t > $$t.log 2>&1 || { grep -v '^ok' $$t.log; echo "FAIL: $$t"; exit 1; }; \
	    printf '  %-28s %s\n' "$${t##*/}" "$$(tail -n 1 $$t.log)"; \
	done

integration: $(BIN)
	LUAGENT_SANITIZED=$(if $(filter 1,$(SAN)),1,0) $(PYTHON) -m pytest -q tests/integration

test:
	@$(MAKE) --no-print-directory $(BIN) unit
	@$(MAKE) --no-print-directory integration

flaky: $(BIN)
	@SAN=$(SAN) sh scripts/flaky-hunt.sh

run: $(BIN)
	@bash scripts/run.sh

bench: $(BIN)
	@sh scripts/bench.sh

# Fuzzing: tests/fuzz/fuzz_X.c with clang's libFuzzer, ASan and UBSan, in
# build-fuzz/. Each target starts from tests/fuzz/corpus/X/ and writes what it
# finds to build-fuzz/corpus/X/ (crashes: build-fuzz/X-crash-*), never the repo.
FUZZ_SECONDS ?= 60
FUZZ_CC       = clang
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS   = -std=gnu11 -D_GNU_SOURCE $(WARN) -O1 -g -fno-omit-frame-pointer \
                $(FUZZ_SAN) -Iinclude $(PKG_CFLAGS)
FUZZ_OBJS_fuzz_proto  = proto base64
FUZZ_OBJS_fuzz_reply  = reply
FUZZ_OBJS_fuzz_binproto = binproto binreply buf
FUZZ_OBJS_fuzz_policy = $(filter-out main,$(SRCS:src/%.c=%)) embedded
FUZZ_LIBS_fuzz_policy = $(LIBS) -Wl,--wrap=getaddrinfo,--wrap=luaL_openlibs
FUZZ_ARGS_fuzz_policy = -dict=tests/fuzz/policy.dict -timeout=20
# The example and fixture policies seed the loader; the fixtures' @NAME@ server
# placeholders are filled in build-fuzz/seeds/ so that they load.
FUZZ_SEEDS_fuzz_policy = examples tests/fixtures build-fuzz/seeds/fuzz_policy
FUZZ_TARGETS = $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    = $(FUZZ_TARGETS:%=build-fuzz/%)

# `make unit` replays every reproducer in tests/fuzz/crashes/ (named after its
# target: fuzz_X-what) and the seed corpus tests/fuzz/corpus/fuzz_X/ through
# the target's LLVMFuzzerTestOneInput, built with $(CC) and tests/fuzz/replay.c
# as main: no clang or libFuzzer needed, sanitizers under SAN=1.
REPLAY_BINS  = $(FUZZ_TARGETS:%=$(BUILD)/tests/replay_%)
unit: replay

$(BUILD)/tests/replay.o: tests/fuzz/replay.c | $(BUILD)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/replay_%: tests/fuzz/%.c $(BUILD)/tests/replay.o \
        $$(addprefix $(BUILD)/,$$(addsuffix .o,$$(FUZZ_OBJS_$$*))) | $(BUILD)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.o,$^) $(FUZZ_LIBS_$*) -lm

replay: $(REPLAY_BINS)
	@for f in tests/fuzz/crashes/*; do \
	    t=$${f##*/}; t=$${t%%-*}; \
	    [ ! -e "$$f" ] || [ -f tests/fuzz/$$t.c ] || \
	        { echo "FAIL: $$f names no fuzz target (tests/fuzz/$$t.c)"; exit 1; }; \
	done
	@for t in $(FUZZ_TARGETS); do \
	    set -- $$(ls tests/fuzz/crashes/$$t-* tests/fuzz/corpus/$$t/* 2>/dev/null); \
	    [ $$# -gt 0 ] || continue; \
	    $(BUILD)/tests/replay_$$t "$$@" > $(BUILD)/tests/replay_$$t.log 2>&1 || \
	        { grep -v '^ok' $(BUILD)/tests/replay_$$t.log; echo "FAIL: replay of $$t inputs"; exit 1; }; \
	    printf '  %-28s %s\n' "replay_$$t" "$$(tail -n 1 $(BUILD)/tests/replay_$$t.log)"; \
	done

.PRECIOUS: build-fuzz/%.o
build-fuzz/%.o: src/%.c
	@mkdir -p build-fuzz
	$(say) FUZZCC $<
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(DEPFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build-fuzz/embedded.o: $(EMBEDDED) scripts/embed.sh
	@mkdir -p build-fuzz
	$(say) EMBED $(EMBEDDED)
	$(Q)sh scripts/embed.sh embedded_luagent lua/luagent.lua \
	    embedded_default_policy examples/default.lua > build-fuzz/embedded.c
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ build-fuzz/embedded.c

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $$(addprefix build-fuzz/,$$(addsuffix .o,$$(FUZZ_OBJS_fuzz_$$*)))
	$(say) FUZZLD $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^) $(FUZZ_LIBS_fuzz_$*)

build-fuzz/seeds/fuzz_policy: $(wildcard tests/fixtures/*.lua)
	@mkdir -p $@
	$(Q)for f in $^; do \
	    sed 's/@[A-Z0-9_]*@/{ "127.0.0.1:11211" }/g' $$f > $@/$${f##*/}; \
	done

fuzz:
	@$(MAKE) --no-print-directory $(FUZZ_BINS) build-fuzz/seeds/fuzz_policy
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p build-fuzz/corpus/$$t; \
	    echo "  FUZZ   $$t ($(FUZZ_SECONDS)s)"; \
	    build-fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build-fuzz/$$t- $(FUZZ_ARGS_$$t) \
	        build-fuzz/corpus/$$t $$(ls -d tests/fuzz/corpus/$$t 2>/dev/null) \
	        $(FUZZ_SEEDS_$$t) > build-fuzz/$$t.log 2>&1 || \
	        { tail -n 60 build-fuzz/$$t.log; echo "FAIL: $$t (log: build-fuzz/$$t.log)"; exit 1; }; \
	    grep -E '^#[0-9]+[[:space:]]+DONE' build-fuzz/$$t.log | sed 's/^/  /'; \
	done

# The binary embeds lua/luagent.lua and examples/default.lua; the installed
# copies are for reading and for policies that build on them.
PREFIX  ?= /usr/local
DESTDIR ?=
INSTALL ?= install
SHARE    = $(DESTDIR)$(PREFIX)/share/luagent

install: $(BIN)
	$(say) INSTALL $(DESTDIR)$(PREFIX)
	$(Q)$(INSTALL) -d $(DESTDIR)$(PREFIX)/bin $(SHARE)/lua $(SHARE)/examples \
	    $(DESTDIR)$(PREFIX)/share/man/man1
	$(Q)$(INSTALL) -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/$(BIN)
	$(Q)$(INSTALL) -m 644 lua/luagent.lua $(SHARE)/lua/luagent.lua
	$(Q)$(INSTALL) -m 644 examples/*.lua examples/luagent.service $(SHARE)/examples/
	$(Q)$(INSTALL) -m 644 docs/luagent.1 $(DESTDIR)$(PREFIX)/share/man/man1/luagent.1

# The package (scripts/debian/, built by scripts/deb.sh) prints its path last.
DEB_DIR ?= build/deb

deb:
	@sh scripts/deb.sh $(DEB_DIR)

-include $(OBJS:.o=.d) $(UNIT_BINS:=.d) $(REPLAY_BINS:=.d) $(BUILD)/tests/replay.d \
         $(wildcard build-fuzz/*.d) $(wildcard $(BUILD)/nolto/*.d)

endif
