# lua-achievers: build, test, demo, install.
#
#   make            build the module, the sandbox module and the achievers-sandbox program
#   make test       install missing Debian packages (as root), build, run the whole spec suite
#   make demo       build, start a sandbox, run the examples against it end to end
#   make install    install into the Lua tree (the rockspec drives this through luarocks)
#   make rock-check install the rock with luarocks for 5.1, 5.2, 5.3, 5.4 and LuaJIT into private
#                   trees and load each one (LuaJIT's from nginx too)
#   make lint       static checks of the C sources
#   make core       the core alone (C99 + libc, built without the Lua or libcurl include paths)
#   make layers     the include graph, checked against the layers of doc/design.md
#   make test LUA=5.1   (5.1, 5.2, 5.3, 5.4 or jit) selects the Lua version
#   make test SAN=1     build with AddressSanitizer and UBSan and run the suite under them

LUA ?= 5.4
ifeq ($(LUA),jit)
LUA_PC    := luajit
LUA_BIN   := luajit
LUA_DEPS  := luajit
LUA_ABI   := 5.1
else
LUA_PC    := lua$(LUA)
LUA_BIN   := lua$(LUA)
LUA_DEPS  := lua$(LUA)
LUA_ABI   := $(LUA)
endif

BUILD     ?= build/$(LUA)$(if $(SAN),-san)
DEPS      := scripts/deps
PKG_CONFIG ?= pkg-config

# Values luarocks passes in (LUA_INCDIR); the defaults serve a plain `make`.
LUA_INCDIR ?= $(patsubst -I%,%,$(filter -I%,$(shell $(PKG_CONFIG) --cflags $(LUA_PC) 2>/dev/null)))
CC        ?= cc
OPT       ?= -O2 -g
WERROR    ?= -Werror
WARN      := -Wall -Wextra $(WERROR) -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS_ALL = $(OPT) $(WARN) -std=c99 -D_GNU_SOURCE -fPIC -fvisibility=hidden \
             -I$(LUA_INCDIR) -Isrc $(CFLAGS) $(SANFLAGS)
LIBFLAG   ?= -shared
ifneq ($(SAN),)
SANFLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT       := -O1 -g
endif

CURL_LIBS := $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null || echo -lcurl)
MHD_LIBS  := $(shell $(PKG_CONFIG) --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)
JANSSON_LIBS := $(shell $(PKG_CONFIG) --libs jansson 2>/dev/null || echo -ljansson)
HIREDIS_LIBS := $(shell $(PKG_CONFIG) --libs hiredis 2>/dev/null || echo -lhiredis)

# The layers (doc/design.md): core (C99 + libc: compiled without the Lua include path, so that
# nothing in it can include Lua or libcurl), store backends, the libcurl driver, the binding.
CORE_SRC    := $(sort $(wildcard src/core/*.c))
CLIENT_SRC  := $(CORE_SRC) $(sort $(wildcard src/store/*.c) $(wildcard src/curl/*.c) $(wildcard src/binding/*.c))
# src/core/sha256.c is compiled into both products (the sandbox has no other client source)
SANDBOX_SRC := $(sort $(filter-out src/sandbox/main.c src/sandbox/lua_sandbox.c,$(wildcard src/sandbox/*.c)) src/core/sha256.c)
CORE_OBJ    := $(CORE_SRC:src/%.c=$(BUILD)/obj/%.o)
CLIENT_OBJ  := $(CLIENT_SRC:src/%.c=$(BUILD)/obj/%.o)
SANDBOX_OBJ := $(SANDBOX_SRC:src/%.c=$(BUILD)/obj/%.o)
CORE_HEADERS := $(wildcard src/core/*.h)
HEADERS     := $(CORE_HEADERS) $(wildcard src/store/*.h src/curl/*.h src/binding/*.h)
SANDBOX_HEADERS := $(wildcard src/sandbox/*.h) src/binding/compat.h src/core/sha256.h

MODULE      := $(BUILD)/achievers.so
SANDBOX_MOD := $(BUILD)/achievers/sandbox.so
SANDBOX_BIN := $(BUILD)/achievers-sandbox
LUA_SRC     := $(shell find src/lua -name '*.lua' 2>/dev/null)

all: $(MODULE) $(SANDBOX_MOD) $(SANDBOX_BIN)

# objects are rebuilt when the flags change (another Lua's headers, sanitizers)
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CFLAGS_ALL)' | cmp -s - $@ || echo '$(CFLAGS_ALL)' > $@

$(BUILD)/obj/sandbox/%.o: src/sandbox/%.c $(SANDBOX_HEADERS) Makefile $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/%.o: src/%.c $(HEADERS) Makefile $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The core sees only itself and the C library: its one include directory holds nothing but
# core/ (no Lua, libcurl or hiredis path, nor the other layers), so an #include of anything
# above it fails to build.
CORE_INC    := $(BUILD)/core-include
CFLAGS_CORE = $(OPT) $(WARN) -std=c99 -D_GNU_SOURCE -fPIC -fvisibility=hidden -I$(CORE_INC) \
              $(CFLAGS) $(SANFLAGS)
$(CORE_INC)/core:
	@mkdir -p $(CORE_INC)
	ln -sfn $(abspath src/core) $@
$(BUILD)/obj/core/%.o: src/core/%.c $(CORE_HEADERS) Makefile $(BUILD)/.flags | $(CORE_INC)/core
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_CORE) -c $< -o $@

# The core alone, as a static library: what engine specs link (spec/engine/).
CORE_LIB    := $(BUILD)/libachievers-core.a
$(CORE_LIB): $(CORE_OBJ)
	$(AR) rcs $@ $^
core: $(CORE_LIB)

$(MODULE): $(CLIENT_OBJ)
	$(CC) $(LIBFLAG) $(SANFLAGS) -o $@ $^ $(CURL_LIBS) $(HIREDIS_LIBS) $(LDFLAGS)

# The state store's Redis scripts live in one Lua file that the OpenResty driver requires as
# it is; the C client embeds the same text as a string (src/store/redis.c).
STORE_SCRIPTS_H := $(BUILD)/gen/store_scripts.h
$(STORE_SCRIPTS_H): src/lua/achievers/store_scripts.lua Makefile
	@mkdir -p $(dir $@)
	{ echo 'static const char store_scripts_lua[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; echo ';'; } > $@
$(BUILD)/obj/store/redis.o: $(STORE_SCRIPTS_H)
$(BUILD)/obj/store/%.o: CFLAGS_ALL += -I$(BUILD)/gen

$(SANDBOX_MOD): $(SANDBOX_OBJ) $(BUILD)/obj/sandbox/lua_sandbox.o
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(SANFLAGS) -o $@ $^ $(MHD_LIBS) $(JANSSON_LIBS) -lpthread $(LDFLAGS)

$(SANDBOX_BIN): $(SANDBOX_OBJ) $(BUILD)/obj/sandbox/main.o
	$(CC) $(SANFLAGS) -o $@ $^ $(MHD_LIBS) $(JANSSON_LIBS) -lpthread $(LDFLAGS)

# A C host that embeds Lua and drives the module from its frame loop (examples/embed).
EMBED_HOST  := $(BUILD)/embed-host
$(EMBED_HOST): examples/embed/host.c Makefile
	$(CC) $(OPT) $(WARN) -std=c99 -D_GNU_SOURCE -I$(LUA_INCDIR) $< -o $@ \
	    $(shell $(PKG_CONFIG) --libs $(LUA_PC)) -lm -ldl

embed: all $(EMBED_HOST)

# The include graph against the layers of doc/design.md (core includes only core; no cycle).
layers:
	$(LUA_BIN) scripts/layers.lua --graph

# Engine specs (spec/engine/): the core alone on a virtual clock, with a fake driver, a scripted
# server and the memory store; no sockets, no Lua. spec/05-engine_spec.lua runs each case;
# `make engine-spec` runs that spec alone.
ENGINE_SPEC := $(BUILD)/engine-spec
$(ENGINE_SPEC): spec/engine/engine_spec.c src/store/memory.c $(CORE_LIB) $(HEADERS) Makefile $(BUILD)/.flags
	$(CC) $(OPT) $(WARN) -std=c99 -D_GNU_SOURCE -Isrc $(CFLAGS) $(SANFLAGS) \
	    spec/engine/engine_spec.c src/store/memory.c $(CORE_LIB) -lm -o $@ $(LDFLAGS)

engine-spec: $(ENGINE_SPEC)
	$(TEST_ENV) $(BUSTED) --lpath='spec/?.lua' $(BUSTED_ARGS) spec/05-engine_spec.lua
.PHONY: engine-spec

# --- dependencies ---------------------------------------------------------------------------
deps-build:
	@$(DEPS) build $(LUA_DEPS)

deps-test: deps-build
	@$(DEPS) test nginx luajit

# --- tests ----------------------------------------------------------------------------------
BUSTED      := $(LUA_BIN) /usr/bin/busted
TEST_ENV     = ACHIEVERS_BUILD=$(BUILD) ACHIEVERS_LUA=$(LUA_BIN) ACHIEVERS_SANDBOX_BIN=$(SANDBOX_BIN) \
               ACHIEVERS_EMBED_HOST=$(EMBED_HOST) ACHIEVERS_ENGINE_SPEC=$(ENGINE_SPEC)
ifneq ($(SAN),)
ASAN_LIB    := $(shell $(CC) -print-file-name=libasan.so)
UBSAN_LIB   := $(shell $(CC) -print-file-name=libubsan.so)
TEST_ENV    += LD_PRELOAD="$(ASAN_LIB) $(UBSAN_LIB)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
               UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
endif

test: deps-test
	@$(LUA_BIN) scripts/layers.lua
	@$(MAKE) --no-print-directory all core $(EMBED_HOST) $(ENGINE_SPEC)
	@# the nginx spec loads the module built for LuaJIT, whatever Lua runs the suite
	@$(MAKE) --no-print-directory LUA=jit SAN= build/jit/achievers.so
	$(TEST_ENV) $(BUSTED) --lpath='src/lua/?.lua;src/lua/?/init.lua;spec/?.lua' \
	    --cpath='$(BUILD)/?.so' $(BUSTED_ARGS) spec

# --- demo -----------------------------------------------------------------------------------
demo: deps-build
	@$(MAKE) --no-print-directory all
	$(TEST_ENV) $(LUA_BIN) scripts/demo.lua

# --- install (luarocks passes INST_LIBDIR, INST_LUADIR, INST_BINDIR) ---------------------------
INST_LIBDIR ?= /usr/local/lib/lua/$(LUA_ABI)
INST_LUADIR ?= /usr/local/share/lua/$(LUA_ABI)
INST_BINDIR ?= /usr/local/bin

install: all
	install -d $(DESTDIR)$(INST_LIBDIR)/achievers $(DESTDIR)$(INST_BINDIR)
	install -m 755 $(MODULE) $(DESTDIR)$(INST_LIBDIR)/achievers.so
	install -m 755 $(SANDBOX_MOD) $(DESTDIR)$(INST_LIBDIR)/achievers/sandbox.so
	install -m 755 $(SANDBOX_BIN) $(DESTDIR)$(INST_BINDIR)/achievers-sandbox
	cd src/lua && for f in $$(find . -name '*.lua'); do \
	    install -D -m 644 $$f $(DESTDIR)$(INST_LUADIR)/$$f; done
	for f in $$(find bin -type f 2>/dev/null); do \
	    install -m 755 $$f $(DESTDIR)$(INST_BINDIR)/; done

# What users install is what we test: the rock, built by luarocks for each Lua it claims.
rock-check: deps-build
	@$(DEPS) rock
	scripts/rock-check $(ROCK_LUAS)

# --- benchmarks (bench/), fuzzing (fuzz/), API docs ----------------------------------------------
bench: deps-build
	@$(DEPS) bench
	@$(MAKE) --no-print-directory all
	$(TEST_ENV) $(LUA_BIN) bench/run.lua $(BENCH_ARGS)
	@# fleets: the budget's use by 8 processes through Redis, and what Redis costs per call
	$(TEST_ENV) $(LUA_BIN) bench/store.lua $(STORE_BENCH_ARGS)

FUZZ_SECONDS ?= 60
fuzz: deps-build
	@$(DEPS) fuzz
	@$(MAKE) --no-print-directory $(STORE_SCRIPTS_H)
	$(MAKE) -C fuzz LUA_INCDIR=$(LUA_INCDIR) LUA_PC=$(LUA_PC) SECONDS=$(FUZZ_SECONDS) \
	    GEN=$(abspath $(BUILD)/gen) run

# LDoc runs on Lua 5.1 here: that is where Debian's lua-markdown lives
# Every public name has an entry with an example (scripts/doc-coverage.lua), then LDoc.
docs: deps-build
	@$(DEPS) docs
	@$(MAKE) --no-print-directory all LUA=5.4 SAN=
	LUA_PATH='src/lua/?.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 scripts/doc-coverage.lua
	lua5.1 $$(command -v ldoc) --fatalwarnings .

# --- checks ---------------------------------------------------------------------------------
lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
	    --suppress=missingIncludeSystem -I src -I $(LUA_INCDIR) src

clean:
	rm -rf build

.PHONY: FORCE all core layers embed deps-build deps-test test demo install rock-check bench fuzz docs lint clean
