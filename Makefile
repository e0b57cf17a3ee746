# keyd — key-management and rotation daemon.  GNU make; out-of-tree build into $(BUILD).
#
#   make            build build/keyd and build/keydctl
#   make check      install missing packages, build, run every test
#   make asan       the whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      benchmarks (ratios against raw PKCS#11 in one run)
#   make run        start keyd in dev mode on ./var
#   make install    install (honours DESTDIR, PREFIX and SYSCONFDIR; an existing keyd.conf is kept)
#   make fuzz       build the libFuzzer targets with clang (replays of the corpus run inside "make check")

VERSION        := 0.1.0
BUILD          ?= build
PREFIX         ?= /usr/local
BINDIR         ?= $(PREFIX)/bin
SBINDIR        ?= $(PREFIX)/sbin
MANDIR         ?= $(PREFIX)/share/man
SYSCONFDIR     ?= /etc
UNITDIR        ?= $(PREFIX)/lib/systemd/system
COMPLETIONDIR  ?= $(PREFIX)/share/bash-completion/completions
SOFTHSM_MODULE ?= /usr/lib/softhsm/libsofthsm2.so
DEVDIR         ?= var

PKGS     := p11-kit-1 libcrypto jansson sqlite3 libsystemd libmicrohttpd inih libcurl
WARNINGS := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Wformat-security \
            -Wno-missing-field-initializers
CFLAGS   ?= -O2 -g
SAN      ?=
ifneq ($(SAN),)
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

# Package flags are expanded lazily (=), so that "make check" can install the packages before they are asked for.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))
KEYD_CFLAGS = -std=gnu11 $(WARNINGS) -D_GNU_SOURCE -I. -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE \
              -DKEYD_VERSION=\"$(VERSION)\" -DKEYD_DEFAULT_MODULE=\"$(SOFTHSM_MODULE)\" \
              $(PKG_CFLAGS) $(SANFLAGS) $(CFLAGS)
KEYD_LDFLAGS = -pie -Wl,-z,relro,-z,now $(SANFLAGS) $(LDFLAGS)
KEYD_LIBS    = $(PKG_LIBS) -ldl -lpthread
TEST_CFLAGS  = $(KEYD_CFLAGS) -Wno-missing-prototypes -DKEYD_TEST_SRCDIR=\"$(CURDIR)\" \
               -DKEYD_TEST_BUILDDIR=\"$(abspath $(BUILD))\" $(shell pkg-config --cflags criterion 2>/dev/null)
TEST_LIBS    = $(shell pkg-config --libs criterion 2>/dev/null) $(KEYD_LIBS)

# Layers, bottom first (STYLE.md): common → {pkcs11, store, jose} → rotation → api → keyd.
LIB_SRCS    := $(sort $(wildcard common/*.c jose/*.c pkcs11/*.c store/*.c rotation/*.c api/*.c))
KEYCTL_SRCS := $(sort $(wildcard keyd/keydctl*.c))
# The daemon's own modules (config, dev mode, the event loop) in an archive of their own, so that tests link them.
DAEMON_SRCS := $(filter-out keyd/main.c $(KEYCTL_SRCS),$(sort $(wildcard keyd/*.c)))
HELPER_SRCS := $(sort $(wildcard tests/helpers/*.c))
UNIT_SRCS   := $(sort $(wildcard tests/unit/test-*.c))
INTEG_SRCS  := $(sort $(wildcard tests/integration/test-*.c))
FUZZ_SRCS   := $(sort $(wildcard tests/fuzz/fuzz-*.c))
BENCH_SRCS  := $(sort $(wildcard tests/bench/bench-*.c))
# LD_PRELOAD shims that integration tests start keyd with (tests/shim/erofs.c: a file system turned read-only).
SHIM_SRCS   := $(sort $(wildcard tests/shim/*.c))

LIB     := $(BUILD)/libkeyd.a
DLIB    := $(BUILD)/libkeyd-daemon.a
OBJ      = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
TESTS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(UNIT_SRCS) $(INTEG_SRCS))
REPLAYS := $(patsubst tests/fuzz/%.c,$(BUILD)/tests/fuzz/%-replay,$(FUZZ_SRCS))
BENCHES := $(patsubst tests/bench/%.c,$(BUILD)/tests/bench/%,$(BENCH_SRCS))
# Libraries that stand in for the world in tests: a PKCS#11 module in front of SoftHSM2 for a network HSM
# (tests/shim/p11shim.h), a preloaded library for a read-only file system (tests/shim/erofs.c).
SHIM    := $(BUILD)/tests/shim/p11shim.so
SHIMS   := $(patsubst tests/shim/%.c,$(BUILD)/tests/shim/%.so,$(SHIM_SRCS))

.PHONY: all deps check asan bench run install clean fuzz tests _check _bench format
.DEFAULT_GOAL := all
.SECONDARY:

all: $(BUILD)/keyd $(BUILD)/keydctl

deps:
	@scripts/deps.sh

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(KEYD_CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(call OBJ,$(LIB_SRCS))
	@rm -f $@
	$(AR) rcs $@ $^

$(DLIB): $(call OBJ,$(DAEMON_SRCS))
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/keyd: $(call OBJ,keyd/main.c) $(DLIB) $(LIB)
	$(CC) $(KEYD_LDFLAGS) -o $@ $^ $(KEYD_LIBS)

$(BUILD)/keydctl: $(call OBJ,$(KEYCTL_SRCS)) $(LIB)
	$(CC) $(KEYD_LDFLAGS) -o $@ $^ $(KEYD_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(call OBJ,$(HELPER_SRCS)) $(DLIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(KEYD_LDFLAGS) -o $@ $^ $(TEST_LIBS)

# Fuzz targets link the daemon's archive too (fuzz-config: keyd/config.c), before the library it builds on; objects
# (with fixture.o, added below) before the archives.
$(BUILD)/tests/fuzz/%-replay: $(BUILD)/obj/tests/fuzz/%.o $(BUILD)/obj/tests/fuzz/replay.o $(DLIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(KEYD_LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(KEYD_LIBS)

# The API fuzz targets share a fixture (token, store, engine, audit log, Api): tests/fuzz/fixture.c.
FUZZ_FIXTURE_USERS := fuzz-api-body fuzz-http
$(foreach t,$(FUZZ_FIXTURE_USERS),$(BUILD)/tests/fuzz/$(t)-replay $(BUILD)/tests/fuzz/$(t)): \
  $(BUILD)/obj/tests/fuzz/fixture.o

$(BUILD)/obj/tests/fuzz/replay.o: tests/fuzz/replay.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

# A module of its own, nothing of keyd's linked in: keyd's flags (KEYD_DEFAULT_MODULE is what it forwards to by
# default), -fPIC instead of -fPIE.
$(SHIM): tests/shim/p11shim.c tests/shim/p11shim.h
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -fPIE,$(KEYD_CFLAGS)) -fPIC -shared -o $@ $< -ldl -lpthread

# Not sanitized: a preloaded library has no ASan runtime of its own (keyd is started with verify_asan_link_order=0).
$(BUILD)/tests/shim/%.so: tests/shim/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(WARNINGS) -D_GNU_SOURCE -O2 -g -fPIC -shared -o $@ $< -ldl

tests: all $(TESTS) $(REPLAYS) $(SHIMS)

# "make check": install what is missing, then build and run every test in a second make, so that the
# pkg-config flags are read after the packages exist.
check: deps
	@$(MAKE) --no-print-directory _check

_check: tests
	@BUILD=$(BUILD) scripts/run-tests.sh $(TESTS) $(REPLAYS)

asan: deps
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:fast_unwind_on_malloc=0 \
	 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 KEYD_TEST_STEPS=1000 \
	 $(MAKE) --no-print-directory BUILD=build/asan SAN=1 CFLAGS="-O1 -g" _check

# The benchmarks also need nginx (bench-cost's baseline): "deps.sh bench" installs it, "make check" does not.
bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory _bench

_bench: all $(BENCHES) $(SHIM)
	@BUILD=$(BUILD) SOFTHSM_MODULE=$(SOFTHSM_MODULE) scripts/run-bench.sh $(BENCHES)

# libFuzzer builds of the fuzz targets (clang); not part of "check", which replays the committed corpus instead.
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang SAN=1 \
	 CFLAGS="-O1 -g -fsanitize=fuzzer-no-link" $(patsubst tests/fuzz/%.c,build/fuzz/tests/fuzz/%,$(FUZZ_SRCS))

build/fuzz/tests/fuzz/%: build/fuzz/obj/tests/fuzz/%.o build/fuzz/libkeyd-daemon.a build/fuzz/libkeyd.a
	@mkdir -p $(dir $@)
	$(CC) $(KEYD_LDFLAGS) -fsanitize=fuzzer -o $@ $(filter %.o,$^) $(filter %.a,$^) $(KEYD_LIBS)

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/keyd --dev $(DEVDIR)

install: all
	install -Dm0755 $(BUILD)/keyd $(DESTDIR)$(SBINDIR)/keyd
	install -Dm0755 $(BUILD)/keydctl $(DESTDIR)$(BINDIR)/keydctl
	for m in $(wildcard docs/man/*.[1-9]); do \
	  s=$${m##*.}; install -Dm0644 $$m $(DESTDIR)$(MANDIR)/man$$s/$$(basename $$m); done
	for u in $(wildcard systemd/*.service systemd/*.socket); do \
	  install -Dm0644 $$u $(DESTDIR)$(UNITDIR)/$$(basename $$u); done
	sed -i 's|/usr/sbin/keyd|$(SBINDIR)/keyd|; s|/etc/keyd/|$(SYSCONFDIR)/keyd/|g' $(DESTDIR)$(UNITDIR)/keyd.service
	install -Dm0644 systemd/keyd.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/keyd.conf
	install -Dm0644 systemd/keyd.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/keyd.conf
	install -Dm0644 systemd/keyd-network-hsm.conf $(DESTDIR)$(PREFIX)/share/keyd/keyd-network-hsm.conf
	install -Dm0644 systemd/keyd.conf.example $(DESTDIR)$(PREFIX)/share/keyd/keyd.conf.example
	install -Dm0644 contrib/keydctl.bash $(DESTDIR)$(COMPLETIONDIR)/keydctl
	@# The example configuration, never over the operator's own.
	if [ -e $(DESTDIR)$(SYSCONFDIR)/keyd/keyd.conf ]; then \
	  echo "$(DESTDIR)$(SYSCONFDIR)/keyd/keyd.conf exists: kept (the example is in $(PREFIX)/share/keyd)"; \
	else install -Dm0644 systemd/keyd.conf.example $(DESTDIR)$(SYSCONFDIR)/keyd/keyd.conf; fi

format:
	clang-format -i $(LIB_SRCS) $(DAEMON_SRCS) keyd/main.c $(KEYCTL_SRCS) $(wildcard */*.h) $(HELPER_SRCS) $(UNIT_SRCS) \
	  $(INTEG_SRCS) $(FUZZ_SRCS) $(BENCH_SRCS) $(wildcard tests/shim/*.[ch])

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# Benchmarks link the library and their own helpers (tests/bench/util.c) only: no criterion.
$(BUILD)/tests/bench/%: $(BUILD)/obj/tests/bench/%.o $(BUILD)/obj/tests/bench/util.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(KEYD_LDFLAGS) -o $@ $^ $(KEYD_LIBS)
$(BENCHES): $(BUILD)/obj/tests/bench/util.o
