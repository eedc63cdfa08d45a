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

# WERROR=1 turns warnings into errors. Developer and CI builds set it (make
# check, make lint, the fuzz targets); a user's plain `make` does not, so a
# newer compiler's new warning cannot break an install from source.
WERROR ?= 0

# pkg-config is asked when a recipe first needs the flags, not when make reads
# this file: `make run` and `make check` install the -dev packages
# (scripts/deps.sh) before anything is compiled, and `make clean` or `make
# deps` need none of them. A module that is missing stops make with its name
# and the Debian package that provides it.
PKGS := fcgi libpq jansson libcrypto
pkg_fcgi := libfcgi-dev
pkg_libpq := libpq-dev
pkg_jansson := libjansson-dev
pkg_libcrypto := libssl-dev
pkg_cmocka := libcmocka-dev
pkgconf_missing = $(error pkg-config module "$(1)" not found: install $(or $(pkg_$(1)),the package that provides $(1).pc) (scripts/deps.sh build installs every build dependency))
# $(call pkgconf_check,MODULES): stops make unless pkg-config knows every one.
pkgconf_check = $(if $(shell command -v $(PKG_CONFIG)),,$(error $(PKG_CONFIG) not found: install pkg-config (scripts/deps.sh build installs every build dependency)))$(foreach m,$(1),$(if $(shell $(PKG_CONFIG) --exists $(m) && echo ok),,$(call pkgconf_missing,$(m))))
# $(call pkgconf,--cflags|--libs,MODULES)
pkgconf = $(call pkgconf_check,$(2))$(shell $(PKG_CONFIG) $(1) $(2))
# Each is computed once, on first use: the variable replaces itself.
PKG_CFLAGS = $(eval PKG_CFLAGS := $(call pkgconf,--cflags,$(PKGS)))$(PKG_CFLAGS)
PKG_LIBS = $(eval PKG_LIBS := $(call pkgconf,--libs,$(PKGS)))$(PKG_LIBS)
CMOCKA_CFLAGS = $(eval CMOCKA_CFLAGS := $(call pkgconf,--cflags,cmocka))$(CMOCKA_CFLAGS)
CMOCKA_LIBS = $(eval CMOCKA_LIBS := $(call pkgconf,--libs,cmocka))$(CMOCKA_LIBS)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
	-Wformat=2 -Wundef
ifeq ($(WERROR),1)
WARN += -Werror
endif
BASE_CFLAGS = -std=gnu11 -D_GNU_SOURCE -O2 -g -pthread -Iinclude $(WARN) $(SAN_FLAGS) \
	-DNEONFCGI_VERSION='"$(VERSION)"' $(PKG_CFLAGS)
# The user's CPPFLAGS, CFLAGS and LDFLAGS come last so they can override ours
# (and a packager's dpkg-buildflags, -D_FORTIFY_SOURCE included, arrive).
FINAL_CFLAGS = $(BASE_CFLAGS) $(CPPFLAGS) $(CFLAGS)
FINAL_LDFLAGS = -pthread $(SAN_FLAGS) $(LDFLAGS)

SRCS := $(wildcard app/*.c)
OBJS := $(patsubst app/%.c,$(BUILD)/obj/%.o,$(SRCS))
DEPS := $(OBJS:.o=.d)

.PHONY: all deps check unit integration soak run install clean valgrind bench lint fuzz deb
all: $(BUILD)/neonfcgi

$(BUILD)/obj/%.o: app/%.c | $(BUILD)/obj
	$(CC) $(FINAL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/neonfcgi: $(OBJS)
	$(CC) $(OBJS) -o $@ $(FINAL_LDFLAGS) $(PKG_LIBS) -lm

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

-include $(DEPS)

# Unit tests: tests/unit/test_<module>.c links app/<module>.c plus the
# neighbours named in test_<module>_SRCS (fakes live in the test file, shared
# fixtures in tests/unit/*_fixture.c).
# A module with the modules below it that it links against.
CONNINFO_SRCS := app/conninfo.c app/problems.c app/redact.c app/pqopts.c app/cabundle.c
PGCONN_SRCS := app/pgconn.c app/dberror.c app/resolve.c $(CONNINFO_SRCS)
test_config_SRCS := app/config.c app/confcheck.c app/envfile.c app/dbsource.c app/peer.c app/account.c \
	$(CONNINFO_SRCS) tests/unit/cwd_fixture.c
# cabundle is faked in test_conninfo.c: which bundle "exists" is the test's.
test_conninfo_SRCS := $(filter-out app/cabundle.c,$(CONNINFO_SRCS))
test_dbsource_SRCS := app/dbsource.c $(CONNINFO_SRCS) tests/unit/cwd_fixture.c
test_envfile_SRCS := app/envfile.c app/problems.c
test_router_SRCS := app/router.c
test_fcgiguard_SRCS := app/fcgiguard.c app/router.c
test_scoreboard_SRCS := app/scoreboard.c app/router.c tests/unit/sb_fixture.c
test_doctor_SRCS := app/doctor.c $(PGCONN_SRCS) app/log.c
test_metrics_SRCS := app/metrics.c app/scoreboard.c app/router.c app/fcgiguard.c $(PGCONN_SRCS) app/log.c \
	tests/unit/sb_fixture.c
test_retry_SRCS := app/retry.c
test_migplan_SRCS := app/migplan.c app/migsplit.c app/problems.c tests/unit/migfixture.c tests/unit/migfixture.h
test_migrate_SRCS := app/migrate.c app/migplan.c app/migsplit.c app/problems.c app/retry.c tests/unit/migfixture.c \
	tests/unit/migfixture.h
test_pgconn_SRCS := $(PGCONN_SRCS)
test_pool_SRCS := app/pool.c app/pool_dial.c app/pool_mirror.c app/retry.c $(PGCONN_SRCS) app/scoreboard.c \
	app/router.c
test_health_SRCS := app/health.c $(PGCONN_SRCS) app/log.c
test_privdrop_SRCS := app/privdrop.c app/account.c
test_healthflight_SRCS := app/healthflight.c app/health.c $(PGCONN_SRCS) app/log.c
test_healthcache_SRCS := app/healthcache.c app/health.c $(PGCONN_SRCS) app/log.c app/scoreboard.c \
	app/router.c tests/unit/sb_fixture.c
test_dbslots_SRCS := app/dbslots.c app/scoreboard.c app/router.c tests/unit/sb_fixture.c
test_arrival_SRCS := app/arrival.c app/listenq.c app/waitroom.c app/fcgiguard.c app/log.c app/scoreboard.c \
	app/router.c tests/unit/sb_fixture.c
# The utility layer (allocation, clock, threads) is linked into every test and fuzz target.
UTIL_SRCS := app/xalloc.c app/clock.c app/thread.c
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))

.SECONDEXPANSION:
$(BUILD)/tests/test_%: tests/unit/test_%.c $$(or $$(test_$$*_SRCS),app/$$*.c) $(UTIL_SRCS) $$(wildcard include/*.h tests/unit/*.h) | $(BUILD)/tests
	$(CC) $(FINAL_CFLAGS) $(CMOCKA_CFLAGS) -Wno-missing-prototypes \
		$(filter %.c,$^) -o $@ $(FINAL_LDFLAGS) $(PKG_LIBS) $(CMOCKA_LIBS) -lm

# Everything: build, run, test, bench and packaging dependencies.
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

# Soak under chaos (tests/soak/soak.py, docs/soak.md): the whole stack under
# steady load for SOAK_SECONDS while faults are injected on a schedule drawn
# from SOAK_SEED (random when unset, printed: the same seed replays it).
# Not part of `make check` at this length; `make check` runs 60 seconds of it.
SOAK_SECONDS ?= 600
SOAK_SEED ?=
soak:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory WERROR=1 $(BUILD)/neonfcgi
	@$(SAN_ENV) NEONFCGI_BIN=$(abspath $(BUILD)/neonfcgi) SAN="$(SAN)" \
		SOAK_SECONDS=$(SOAK_SECONDS) SOAK_SEED=$(SOAK_SEED) /usr/bin/python3 tests/soak/soak.py

# `run` and `check` install what is missing first, then build in a new make,
# which asks pkg-config only now that the -dev packages are there.
# check: the secrets gate, then build, unit tests, a short fuzzing run of each
# target (FUZZ_CHECK_SECONDS, 0 skips it), integration tests, a 60-second soak; warnings are
# errors (WERROR=1).
check:
	@scripts/deps.sh test
	@scripts/check-secrets.sh
	@$(MAKE) --no-print-directory WERROR=1 all unit
	@$(MAKE) --no-print-directory WERROR=1 fuzz-check
	@$(MAKE) --no-print-directory WERROR=1 integration
	@$(MAKE) --no-print-directory soak SOAK_SECONDS=60

.PHONY: secrets
secrets:
	@scripts/check-secrets.sh

# Static analysis: cppcheck and clang-tidy (checks in .clang-tidy) over app/,
# zero findings (scripts/lint.sh).
# With the warning flags and -Werror: clang compiles app/*.c for its warnings.
lint:
	@scripts/lint.sh $(WARN) -Werror $(PKG_CFLAGS)

valgrind: $(UNIT_BINS)
	@VALGRIND=1 scripts/run-unit.sh $(UNIT_BINS)

run:
	@scripts/deps.sh run
	@$(MAKE) --no-print-directory all
	@scripts/run.sh $(abspath $(BUILD)/neonfcgi)

# Load benchmark (bench/, not part of `make check`): deps first, then the build,
# as `check` does, so it also runs on a machine without the -dev packages yet.
BENCH_BINS := $(BUILD)/bench/fcgi-floor $(BUILD)/bench/fcgi-db-floor $(BUILD)/bench/delay-relay \
	$(BUILD)/bench/neonfcgi-nosb
$(BUILD)/bench:
	mkdir -p $@
# The product without its per-request and per-accept scoreboard work (the
# request counters, the busy-thread gauge, the listen-queue sampling): the A/B
# baseline. bench/scoreboard-off.c says what each wrapper stands in for.
NOSB_WRAPS := scoreboard_request scoreboard_thread_busy scoreboard_listen_queue listenq_kind
$(BUILD)/bench/neonfcgi-nosb: $(OBJS) bench/scoreboard-off.c | $(BUILD)/bench
	$(CC) $(FINAL_CFLAGS) $(foreach f,$(NOSB_WRAPS),-Wl,--wrap=$(f)) $(OBJS) \
		bench/scoreboard-off.c -o $@ $(FINAL_LDFLAGS) $(PKG_LIBS) -lm
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

# `make install` installs exactly the files listed in docs/deployment.md ("Installing"):
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
FUZZ_FLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -Iinclude $(WARN) -Werror -Wno-missing-prototypes \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
fuzz_envfile_SRCS := app/envfile.c app/problems.c
fuzz_config_SRCS := app/config.c app/confcheck.c app/envfile.c app/dbsource.c app/peer.c app/account.c \
	$(CONNINFO_SRCS)
fuzz_router_SRCS := app/router.c
fuzz_fcgiguard_SRCS := app/fcgiguard.c app/router.c
fuzz_migsplit_SRCS := app/migsplit.c
fuzz_peer_SRCS := app/peer.c
FUZZ_NAMES := envfile config router fcgiguard migsplit peer
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

# Debian package (debian/): built by dpkg-buildpackage -b -us -uc in a copy of
# the tree under DEB_DIR, so the .deb and its .changes land in DEB_DIR
# (build/deb/ by default) and the package's `make clean` never touches build/.
# Then lintian, which fails on errors. Installs dpkg-dev, debhelper and lintian
# first (scripts/deps.sh deb).
DEB_DIR ?= build/deb
deb:
	@scripts/deps.sh deb
	@scripts/deb.sh --lintian $(DEB_DIR)
