# neonfcgi build. `make` builds build/neonfcgi; see README.md for the rest.
PKG_CONFIG ?= pkg-config
CC ?= cc
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
VERSION := 0.1.0

# SAN=address,undefined builds everything with sanitizers into build/san/.
SAN ?=
ifeq ($(SAN),)
BUILD ?= build
SAN_FLAGS :=
else
BUILD ?= build/san
SAN_FLAGS := -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

PKGS := fcgi libpq jansson libcrypto
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell $(PKG_CONFIG) --cflags cmocka 2>/dev/null)
CMOCKA_LIBS := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
	-Wformat=2 -Wundef -Werror
BASE_CFLAGS := -std=gnu11 -D_GNU_SOURCE -O2 -g -pthread -Iinclude $(WARN) $(SAN_FLAGS) \
	-DNEONFCGI_VERSION='"$(VERSION)"' $(PKG_CFLAGS)
# The user's CFLAGS/LDFLAGS come last so they can override ours.
FINAL_CFLAGS = $(BASE_CFLAGS) $(CFLAGS)
FINAL_LDFLAGS = -pthread $(SAN_FLAGS) $(LDFLAGS)

SRCS := $(wildcard app/*.c)
OBJS := $(patsubst app/%.c,$(BUILD)/obj/%.o,$(SRCS))
DEPS := $(OBJS:.o=.d)

.PHONY: all deps check unit integration run install clean valgrind bench lint fuzz
all: $(BUILD)/neonfcgi

$(BUILD)/obj/%.o: app/%.c | $(BUILD)/obj
	$(CC) $(FINAL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/neonfcgi: $(OBJS)
	$(CC) $(OBJS) -o $@ $(FINAL_LDFLAGS) $(PKG_LIBS) -lm

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

-include $(DEPS)

# Unit tests: tests/unit/test_<module>.c links app/<module>.c plus the
# neighbours named in test_<module>_SRCS (fakes live in the test file).
# A module with the modules below it that it links against.
CONNINFO_SRCS := app/conninfo.c app/problems.c app/redact.c
PGCONN_SRCS := app/pgconn.c $(CONNINFO_SRCS)
test_config_SRCS := app/config.c app/envfile.c app/dbsource.c $(CONNINFO_SRCS)
test_conninfo_SRCS := $(CONNINFO_SRCS)
test_dbsource_SRCS := app/dbsource.c $(CONNINFO_SRCS)
test_envfile_SRCS := app/envfile.c app/problems.c
test_router_SRCS := app/router.c
test_scoreboard_SRCS := app/scoreboard.c app/router.c
test_metrics_SRCS := app/metrics.c app/scoreboard.c app/router.c $(PGCONN_SRCS) app/log.c
test_retry_SRCS := app/retry.c
test_migrate_SRCS := app/migrate.c app/retry.c
test_pgconn_SRCS := $(PGCONN_SRCS)
test_pool_SRCS := app/pool.c app/retry.c $(PGCONN_SRCS) app/scoreboard.c app/router.c
test_health_SRCS := app/health.c $(PGCONN_SRCS) app/log.c
# The utility layer (allocation, clock) is linked into every test and fuzz target.
UTIL_SRCS := app/xalloc.c app/clock.c
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

.SECONDEXPANSION:
$(BUILD)/tests/test_%: tests/unit/test_%.c $$(or $$(test_$$*_SRCS),app/$$*.c) $(UTIL_SRCS) $$(wildcard include/*.h) | $(BUILD)/tests
	$(CC) $(FINAL_CFLAGS) $(CMOCKA_CFLAGS) -Wno-missing-prototypes \
		$(filter %.c,$^) -o $@ $(FINAL_LDFLAGS) $(PKG_LIBS) $(CMOCKA_LIBS) -lm

deps:
	@scripts/deps.sh

# With SAN set: stop at the first error and abort (a worker that trips a
# sanitizer dies of SIGABRT, which the master logs and the tests catch).
# LeakSanitizer is on: unit tests and one-shot commands exit normally and must
# free what they own; the master is checked when it exits; workers leave with
# _exit(), where LeakSanitizer does not look, which test_valgrind.py covers.
# Set ASAN_OPTIONS/UBSAN_OPTIONS yourself to override.
ifneq ($(SAN),)
SAN_ENV := ASAN_OPTIONS="$${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1}" \
	UBSAN_OPTIONS="$${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}"
endif

unit: $(UNIT_BINS)
	@$(SAN_ENV) scripts/run-unit.sh $(UNIT_BINS)

integration: $(BUILD)/neonfcgi
	@$(SAN_ENV) NEONFCGI_BIN=$(abspath $(BUILD)/neonfcgi) SAN="$(SAN)" /usr/bin/python3 tests/integration/run.py $(TESTS)

# The secrets gate first, then build, unit tests, a short fuzzing run of each
# target (FUZZ_CHECK_SECONDS, 0 skips it), integration tests.
check: deps
	@scripts/check-secrets.sh
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory fuzz-check
	@$(MAKE) --no-print-directory integration

.PHONY: secrets
secrets:
	@scripts/check-secrets.sh

# Static analysis: cppcheck and clang-tidy (checks in .clang-tidy) over app/,
# zero findings (scripts/lint.sh).
lint:
	@scripts/lint.sh $(PKG_CFLAGS)

valgrind: $(UNIT_BINS)
	@VALGRIND=1 scripts/run-unit.sh $(UNIT_BINS)

run: deps all
	@scripts/run.sh $(abspath $(BUILD)/neonfcgi)

# Load benchmark (bench/, not part of `make check`): deps first, then the build,
# as `check` does, so it also runs on a machine without the -dev packages yet.
BENCH_BINS := $(BUILD)/bench/fcgi-floor $(BUILD)/bench/fcgi-db-floor $(BUILD)/bench/delay-relay \
	$(BUILD)/bench/neonfcgi-nosb
$(BUILD)/bench:
	mkdir -p $@
# The product without its per-request scoreboard writes: the A/B baseline.
$(BUILD)/bench/neonfcgi-nosb: $(OBJS) bench/scoreboard-off.c | $(BUILD)/bench
	$(CC) $(FINAL_CFLAGS) -Wl,--wrap=scoreboard_request $(OBJS) bench/scoreboard-off.c -o $@ \
		$(FINAL_LDFLAGS) $(PKG_LIBS) -lm
$(BUILD)/bench/fcgi-floor: bench/fcgi-floor.c | $(BUILD)/bench
	$(CC) $(FINAL_CFLAGS) -DFLOOR_DB=0 $< -o $@ $(FINAL_LDFLAGS) $(PKG_LIBS)
$(BUILD)/bench/fcgi-db-floor: bench/fcgi-floor.c | $(BUILD)/bench
	$(CC) $(FINAL_CFLAGS) -DFLOOR_DB=1 $< -o $@ $(FINAL_LDFLAGS) $(PKG_LIBS)
$(BUILD)/bench/delay-relay: bench/delay-relay.c | $(BUILD)/bench
	$(CC) $(FINAL_CFLAGS) $< -o $@ $(FINAL_LDFLAGS)
.PHONY: bench-bins
bench-bins: $(BENCH_BINS)

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory all bench-bins
	@NEONFCGI_BIN=$(abspath $(BUILD)/neonfcgi) BENCH_BIN_DIR=$(abspath $(BUILD)/bench) \
		/usr/bin/python3 bench/bench.py

# `make install` installs exactly the files listed in README.md ("Installing"):
# the binary, the man page, every file of deploy/ as an example, and the
# migrations (`neonfcgi migrate` needs them). PREFIX and DESTDIR on every path.
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
DOCDIR ?= $(DATADIR)/doc/neonfcgi
INSTALL_EXAMPLES = $(wildcard deploy/*/*)
INSTALL_MIGRATIONS = $(wildcard migrations/*.sql)
install: $(BUILD)/neonfcgi
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DATADIR)/neonfcgi/migrations
	install -m 0755 $(BUILD)/neonfcgi $(DESTDIR)$(BINDIR)/neonfcgi
	install -m 0644 man/neonfcgi.8 $(DESTDIR)$(MANDIR)/man8/neonfcgi.8
	@set -e; for f in $(INSTALL_EXAMPLES); do \
		mode=0644; [ -x "$$f" ] && mode=0755; \
		echo "install -D -m $$mode $$f $(DESTDIR)$(DOCDIR)/examples/$${f#deploy/}"; \
		install -D -m $$mode "$$f" "$(DESTDIR)$(DOCDIR)/examples/$${f#deploy/}"; \
	done
	@set -e; for f in $(INSTALL_MIGRATIONS); do \
		echo "install -m 0644 $$f $(DESTDIR)$(DATADIR)/neonfcgi/$$f"; \
		install -m 0644 "$$f" "$(DESTDIR)$(DATADIR)/neonfcgi/$$f"; \
	done

.PHONY: uninstall
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/neonfcgi $(DESTDIR)$(MANDIR)/man8/neonfcgi.8
	rm -rf $(DESTDIR)$(DOCDIR) $(DESTDIR)$(DATADIR)/neonfcgi

clean:
	rm -rf build

# Fuzzing (libFuzzer, clang): tests/fuzz/fuzz_NAME.c links the app/*.c files in
# fuzz_NAME_SRCS; binaries in build/fuzz/, whatever SAN says. `make fuzz
# FUZZ_SECONDS=600` runs each target that long; `make check` runs each for
# FUZZ_CHECK_SECONDS. Seeds: tests/fuzz/corpus/NAME/ (see scripts/run-fuzz.sh).
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CHECK_SECONDS ?= 20
FUZZ_FLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -Iinclude $(WARN) -Wno-missing-prototypes \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
fuzz_envfile_SRCS := app/envfile.c app/problems.c
fuzz_config_SRCS := app/config.c app/envfile.c app/dbsource.c $(CONNINFO_SRCS)
fuzz_router_SRCS := app/router.c
fuzz_fcgiguard_SRCS := app/fcgiguard.c
FUZZ_NAMES := envfile config router fcgiguard
FUZZ_BINS := $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_NAMES))
build/fuzz:
	mkdir -p $@
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $$(fuzz_$$*_SRCS) $(UTIL_SRCS) $$(wildcard include/*.h) | build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $(PKG_CFLAGS) $(filter %.c,$^) -o $@ $(PKG_LIBS) -lm
.PHONY: fuzz-bins fuzz-check
fuzz-bins: $(FUZZ_BINS)
fuzz: fuzz-bins
	@scripts/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BINS)
fuzz-check: fuzz-bins
	@FUZZ_SEED=1 scripts/run-fuzz.sh $(FUZZ_CHECK_SECONDS) $(FUZZ_BINS)
