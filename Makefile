# evstore: plain Makefile. `make` builds the library and the evstore tool;
# `make check` runs the tests; `make demo` runs the example on PostgreSQL;
# `make help` lists the rest.
#
# Knobs: PREFIX LIBDIR INCLUDEDIR PKGCONFIGDIR BINDIR MANDIR DESTDIR
# (install), CC CXX
# PKG_CONFIG, CFLAGS CPPFLAGS LDFLAGS (added to ours, never replacing them),
# WERROR=0 (warnings stay warnings), OPT (default -O2 -g), BUILD (build/).
# `make check`, `demo`, `asan` and `valgrind` first run scripts/deps.sh,
# which installs missing Debian packages when root (EVS_SKIP_DEPS=1: don't).

PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
BINDIR       ?= $(PREFIX)/bin
MANDIR       ?= $(PREFIX)/share/man
PKG_CONFIG   ?= pkg-config

# Versions live only in version.h. While MAJOR is 0, every minor release may
# break the ABI, so 0.MINOR goes in the SONAME (and names the map's node).
ver      = $(shell awk '/define EVS_VERSION_$(1) / {print $$3}' include/evstore/version.h)
MAJOR   := $(call ver,MAJOR)
MINOR   := $(call ver,MINOR)
PATCH   := $(call ver,PATCH)
VERSION := $(MAJOR).$(MINOR).$(PATCH)
SONAME  := libevstore.so.$(if $(filter 0,$(MAJOR)),$(MAJOR).$(MINOR),$(MAJOR))
REALNAME:= libevstore.so.$(VERSION)

WARN     = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wwrite-strings
WERROR  ?= 1
WARN    += $(if $(filter 1,$(WERROR)),-Werror)
CXXWARN  = -Wall -Wextra -Wpedantic -Wshadow $(if $(filter 1,$(WERROR)),-Werror)
OPT     ?= -O2 -g
SAN     ?=

# Computed once per make run; silent when missing (need-pkgs says why).
DEPS_PKGS     = libpq json-c
DEPS_CFLAGS  := $(shell $(PKG_CONFIG) --cflags $(DEPS_PKGS) 2>/dev/null)
DEPS_LIBS    := $(shell $(PKG_CONFIG) --libs $(DEPS_PKGS) 2>/dev/null)
JSONC_CFLAGS := $(shell $(PKG_CONFIG) --cflags json-c 2>/dev/null)
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

DEPFLAGS    = -MMD -MP
EVS_CFLAGS  = -std=c11 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden \
              -Iinclude -Ilib -I$(BUILD)/gen $(WARN) $(OPT) $(SAN) $(DEPS_CFLAGS) \
              $(CPPFLAGS) $(CFLAGS)
TEST_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Itest $(WARN) \
              $(OPT) $(SAN) $(DEPS_CFLAGS) $(CHECK_CFLAGS) $(CPPFLAGS) $(CFLAGS)
EX_CFLAGS   = -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude $(WARN) $(OPT) \
              $(SAN) $(DEPS_CFLAGS) $(CPPFLAGS) $(CFLAGS)
TOOL_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Itools $(WARN) \
              $(OPT) $(SAN) $(DEPS_CFLAGS) $(CPPFLAGS) $(CFLAGS)
# -z defs: every symbol the .so uses must come from a library it names.
# (Not with sanitizers: their runtime comes from the executable.)
SO_LDFLAGS  = -shared -Wl,-soname,$(SONAME) \
              -Wl,--version-script=lib/evstore.map $(if $(SAN),,-Wl,-z,defs)

BUILD   ?= build
LIB_SRCS := $(wildcard lib/*.c lib/pg/*.c)
# ar keeps one member per file name: two sources of one name would lose one.
ifneq ($(words $(notdir $(LIB_SRCS))),$(words $(sort $(notdir $(LIB_SRCS)))))
$(error lib/ and lib/pg/ hold two .c files of the same name)
endif
LIB_OBJS := $(LIB_SRCS:lib/%.c=$(BUILD)/lib/%.o)
HEADERS  := $(wildcard include/evstore/*.h)

UNIT_SRCS := $(wildcard test/unit/*.c) $(wildcard test/contract/*.c) \
             $(wildcard test/common/*.c)
UNIT_OBJS := $(UNIT_SRCS:%.c=$(BUILD)/%.o)
INTEG_SRCS := $(wildcard test/integration/*.c) $(wildcard test/contract/*.c) \
              $(wildcard test/common/*.c)
INTEG_OBJS := $(INTEG_SRCS:%.c=$(BUILD)/%.o)

EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLES     := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)

# The evstore tool: tools/*.c plus the sql/ migrations, embedded.
MIGRATIONS := $(sort $(wildcard sql/[0-9][0-9][0-9][0-9]_*.sql))
TOOL_SRCS  := $(wildcard tools/*.c)
TOOL_OBJS  := $(TOOL_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/tools/migrations.o
EVSTORE    := $(BUILD)/tools/evstore

# What `make check` runs, in order, after building. check-integration runs
# the same contract suite, and the PostgreSQL suites, on a real server.
CHECKS = check-unit check-integration check-cli check-headers \
         check-exports check-install

.PHONY: all check check-unit check-integration check-cli check-headers \
        check-exports check-install deps need-pkgs need-check asan \
        valgrind examples tools demo install uninstall clean help bench \
        FORCE

all: $(BUILD)/$(REALNAME) $(BUILD)/$(SONAME) $(BUILD)/libevstore.so \
     $(BUILD)/libevstore.a $(BUILD)/evstore.pc $(EVSTORE)

# ---- packages ----------------------------------------------------------

deps:
	@sh scripts/deps.sh

need-pkgs:
	@$(PKG_CONFIG) --exists $(DEPS_PKGS) 2>/dev/null || { \
	    echo "evstore: pkg-config cannot find $(DEPS_PKGS):" \
	         "run 'make deps' (as root on Debian) or scripts/deps.sh" >&2; \
	    exit 1; }

need-check:
	@$(PKG_CONFIG) --exists check 2>/dev/null || { \
	    echo "evstore: pkg-config cannot find check:" \
	         "run 'make deps' (as root on Debian) or scripts/deps.sh" >&2; \
	    exit 1; }

# ---- library -----------------------------------------------------------

$(BUILD)/lib/%.o: lib/%.c | need-pkgs
	@mkdir -p $(@D)
	$(CC) $(EVS_CFLAGS) $(DEPFLAGS) -c -o $@ $<

# The library knows the sql/ migrations by name (it names the one a
# schema lacks); a static assertion ties their number to
# EVS_PG_SCHEMA_VERSION, so a migration cannot be added unnoticed.
$(BUILD)/gen/pg_migrations.h: $(MIGRATIONS) tools/embed-sql.sh
	@mkdir -p $(@D)
	sh tools/embed-sql.sh --names $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/lib/pg/open.o: $(BUILD)/gen/pg_migrations.h

$(BUILD)/$(REALNAME): $(LIB_OBJS) lib/evstore.map
	$(CC) $(SO_LDFLAGS) $(SAN) $(LDFLAGS) -o $@ $(LIB_OBJS) $(DEPS_LIBS) \
	    -pthread

$(BUILD)/$(SONAME): $(BUILD)/$(REALNAME)
	ln -sf $(REALNAME) $@

$(BUILD)/libevstore.so: $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $@

$(BUILD)/libevstore.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJS)

# evstore.pc bakes in the install paths: rebuild it whenever they change
# (pc.vars is rewritten only when its content differs).
PC_VARS = $(PREFIX):$(LIBDIR):$(INCLUDEDIR):$(VERSION)
$(BUILD)/pc.vars: FORCE
	@mkdir -p $(@D)
	@echo '$(PC_VARS)' | cmp -s - $@ || echo '$(PC_VARS)' > $@

# Paths under PREFIX are written relative to ${prefix}.
pcdir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
$(BUILD)/evstore.pc: evstore.pc.in $(BUILD)/pc.vars
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pcdir,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pcdir,$(INCLUDEDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' $< > $@

# ---- the evstore tool ----------------------------------------------------

tools: $(EVSTORE)

# The migrations become byte arrays in a generated C file; a static
# assertion there ties the last one to EVS_PG_SCHEMA_VERSION.
$(BUILD)/tools/migrations.c: $(MIGRATIONS) tools/embed-sql.sh
	@mkdir -p $(@D)
	sh tools/embed-sql.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/tools/migrations.o: $(BUILD)/tools/migrations.c | need-pkgs
	$(CC) $(TOOL_CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(BUILD)/tools/%.o: tools/%.c | need-pkgs
	@mkdir -p $(@D)
	$(CC) $(TOOL_CFLAGS) $(DEPFLAGS) -c -o $@ $<

# Linked with the static library: the installed tool needs no libevstore.so.
$(EVSTORE): $(TOOL_OBJS) $(BUILD)/libevstore.a
	$(CC) $(SAN) $(LDFLAGS) -o $@ $(TOOL_OBJS) $(BUILD)/libevstore.a \
	    $(DEPS_LIBS) -pthread

# ---- tests -------------------------------------------------------------

$(BUILD)/test/%.o: test/%.c | need-pkgs need-check
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $(DEPFLAGS) -c -o $@ $<

# The unit runner links the static library: no LD_LIBRARY_PATH games.
$(BUILD)/test/unit-runner: $(UNIT_OBJS) $(BUILD)/libevstore.a
	$(CC) $(SAN) $(LDFLAGS) -o $@ $(UNIT_OBJS) $(BUILD)/libevstore.a \
	    $(DEPS_LIBS) $(CHECK_LIBS) -pthread

$(BUILD)/test/integration-runner: $(INTEG_OBJS) $(BUILD)/libevstore.a
	$(CC) $(SAN) $(LDFLAGS) -o $@ $(INTEG_OBJS) $(BUILD)/libevstore.a \
	    $(DEPS_LIBS) $(CHECK_LIBS) -pthread

check: deps
	@$(MAKE) --no-print-directory all
	@failed=""; for t in $(CHECKS); do \
	    echo "---- $$t"; \
	    $(MAKE) --no-print-directory $$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "make check: FAILED:$$failed" >&2; \
	    exit 1; fi; \
	echo "make check: all passed ($(CHECKS))"

check-unit: $(BUILD)/test/unit-runner
	$(BUILD)/test/unit-runner

# On EVS_TEST_PG_DSN's server, else on a throwaway one (scripts/with-pg.sh):
# a fresh schema and roles per run, sql/ applied with psql, dropped after.
check-integration: $(BUILD)/test/integration-runner
	sh scripts/with-pg.sh sh test/integration/run.sh \
	    $(BUILD)/test/integration-runner

# Every evstore subcommand against the throwaway server (test/cli/run.sh):
# its own schemas, dropped at the end.
check-cli: $(EVSTORE)
	sh scripts/with-pg.sh sh test/cli/run.sh $(EVSTORE)

# Each public header on its own (twice, for the guard) as C99, C11 and
# C++11; then test/headers.c (C11) and test/headers.cpp (C++) include them
# all and take the address of every EVS_EXTERN function, linked to the .a:
# a declaration without a definition, or outside extern "C", fails to link.
check-headers: $(BUILD)/test/headers-c $(BUILD)/test/headers-cpp
	@fail=0; for h in $(HEADERS:include/%=%); do \
	    tu="#include <$$h>\n#include <$$h>\ntypedef int evs_header_check_;\n"; \
	    for std in c99 c11; do \
	        printf "$$tu" | $(CC) -std=$$std $(WARN) -Iinclude \
	            $(JSONC_CFLAGS) -x c -fsyntax-only - || { \
	            echo "check-headers: $$h fails as $$std" >&2; fail=1; }; \
	    done; \
	    printf "$$tu" | $(CXX) -std=c++11 $(CXXWARN) -Iinclude \
	        $(JSONC_CFLAGS) -x c++ -fsyntax-only - || { \
	        echo "check-headers: $$h fails as C++11" >&2; fail=1; }; \
	done; \
	test $$fail = 0 && echo "check-headers: $(words $(HEADERS)) headers" \
	    "compile alone as C99, C11 and C++11"
	$(CC) -std=c99 $(WARN) -Iinclude -I$(BUILD)/test $(JSONC_CFLAGS) \
	    -fsyntax-only test/headers.c
	$(BUILD)/test/headers-c
	$(BUILD)/test/headers-cpp

$(BUILD)/test/extern-list.h: $(HEADERS) scripts/extern-names.sh
	@mkdir -p $(@D)
	sh scripts/extern-names.sh $(HEADERS) | sed 's/.*/EVS_SYM(&)/' > $@

$(BUILD)/test/headers-c: test/headers.c $(BUILD)/test/extern-list.h \
                         $(BUILD)/libevstore.a | need-pkgs
	$(CC) -std=c11 $(WARN) $(OPT) -Iinclude -I$(BUILD)/test $(DEPS_CFLAGS) \
	    $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libevstore.a \
	    $(DEPS_LIBS) -pthread

$(BUILD)/test/headers-cpp: test/headers.cpp test/headers.c \
                           $(BUILD)/test/extern-list.h \
                           $(BUILD)/libevstore.a | need-pkgs
	$(CXX) -std=c++11 $(CXXWARN) $(OPT) -Iinclude -I$(BUILD)/test \
	    $(DEPS_CFLAGS) $(CPPFLAGS) $(CXXFLAGS) $(LDFLAGS) -o $@ $< \
	    $(BUILD)/libevstore.a $(DEPS_LIBS) -pthread

# Only evs_ names exported, all of them declared; no exit()/abort().
check-exports: $(BUILD)/$(REALNAME) $(BUILD)/libevstore.a
	sh scripts/check-exports.sh $(BUILD)/$(REALNAME) $(BUILD)/libevstore.a \
	    $(SONAME) $(HEADERS)

# A staged install, a consumer built from pkg-config alone against it, then
# a staged uninstall that must leave no file behind.
STAGE = $(abspath $(BUILD))/stage
check-install: all
	@rm -rf $(STAGE)
	@$(MAKE) -s --no-print-directory install DESTDIR=$(STAGE)
	CC='$(CC)' CFLAGS='$(CFLAGS)' LDFLAGS='$(LDFLAGS)' \
	    PKG_CONFIG='$(PKG_CONFIG)' sh test/install/run.sh $(STAGE) \
	    $(PKGCONFIGDIR) $(LIBDIR) $(SONAME) $(BUILD)/test/install
	@$(MAKE) -s --no-print-directory uninstall DESTDIR=$(STAGE)
	@left=$$(find $(STAGE) ! -type d); if [ -n "$$left" ]; then \
	    echo "check-install: left after uninstall:" $$left >&2; exit 1; fi
	@rm -rf $(STAGE)
	@echo "check-install: install, pkg-config consumer, uninstall: ok"

# check-unit, check-integration and check-cli again, built in build-asan/
# with ASan and UBSan (the CLI checks without their valgrind part, which
# a sanitized binary cannot run, nor their peak-memory check, which
# AddressSanitizer's held-back memory would fail).
asan: deps
	@ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1} \
	 UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1} \
	 CK_TIMEOUT_MULTIPLIER=$${CK_TIMEOUT_MULTIPLIER:-4} \
	 EVS_CLI_VALGRIND=0 EVS_CLI_SANITIZED=1 \
	 $(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    check-unit check-integration check-cli

# The unit runner under memcheck; CK_FORK=no keeps the tests in one process.
valgrind: deps
	@$(MAKE) --no-print-directory $(BUILD)/test/unit-runner
	CK_FORK=no valgrind -q --leak-check=full --error-exitcode=1 \
	    --show-leak-kinds=definite,indirect,possible \
	    --errors-for-leak-kinds=definite,indirect,possible \
	    $(BUILD)/test/unit-runner

# ---- examples ----------------------------------------------------------

# One program per examples/*.c, linked with the static library.
examples: $(EXAMPLES)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libevstore.a | need-pkgs
	@mkdir -p $(@D)
	$(CC) $(EX_CFLAGS) -MMD -MP -MF $@.d $(LDFLAGS) -o $@ $< \
	    $(BUILD)/libevstore.a $(DEPS_LIBS) -pthread

# Packages (when root), build, a throwaway PostgreSQL unless EVS_PG_DSN
# names one, evstore migrate, the example, evstore read: scripts/demo.sh.
demo:
	@sh scripts/demo.sh $(BUILD)

# ---- benchmarks --------------------------------------------------------

# bench/evs-bench beside pgbench on one throwaway server (bench/run.sh);
# BENCH_QUICK=1 for a short run. Results: stdout and bench/RESULTS.md.
$(BUILD)/bench/evs-bench: bench/evs-bench.c $(BUILD)/libevstore.a | need-pkgs
	@mkdir -p $(@D)
	$(CC) $(EX_CFLAGS) -MMD -MP -MF $@.d $(LDFLAGS) -o $@ $< \
	    $(BUILD)/libevstore.a $(DEPS_LIBS) -pthread -lm

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/bench/evs-bench $(EVSTORE)
	EVS_PG_SETTINGS="-c shared_buffers=256MB $${EVS_PG_SETTINGS:-}" \
	EVSTORE_BIN=$(EVSTORE) \
	    sh scripts/with-pg.sh sh bench/run.sh $(BUILD)/bench/evs-bench

# ---- install -----------------------------------------------------------

install: all
	install -D -m 755 $(BUILD)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sf $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libevstore.so
	install -m 644 $(BUILD)/libevstore.a $(DESTDIR)$(LIBDIR)/libevstore.a
	install -d $(DESTDIR)$(INCLUDEDIR)/evstore
	install -m 644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/evstore/
	install -D -m 644 $(BUILD)/evstore.pc $(DESTDIR)$(PKGCONFIGDIR)/evstore.pc
	install -D -m 755 $(EVSTORE) $(DESTDIR)$(BINDIR)/evstore
	install -D -m 644 tools/evstore.1 $(DESTDIR)$(MANDIR)/man1/evstore.1

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libevstore.so $(DESTDIR)$(LIBDIR)/libevstore.a \
	      $(DESTDIR)$(PKGCONFIGDIR)/evstore.pc \
	      $(DESTDIR)$(BINDIR)/evstore $(DESTDIR)$(MANDIR)/man1/evstore.1 \
	      $(HEADERS:include/%=$(DESTDIR)$(INCLUDEDIR)/%)
	rmdir $(DESTDIR)$(INCLUDEDIR)/evstore 2>/dev/null || true

clean:
	rm -rf build build-asan $(BUILD)

help:
	@echo "make              library: $(BUILD)/$(REALNAME), .a, evstore.pc;"
	@echo "                  and the tool: $(EVSTORE)"
	@echo "make check        deps, then: $(CHECKS)"
	@echo "make check-unit   Check unit + contract suites (memory backend)"
	@echo "make check-integration  PostgreSQL suites (throwaway server);"
	@echo "                  CK_RUN_SUITE=NAME runs one: contract postgres"
	@echo "                  pg_json order settings faults reads"
	@echo "make check-cli    every evstore subcommand (throwaway server)"
	@echo "make asan         unit + integration + CLI with ASan+UBSan (build-asan/)"
	@echo "make valgrind     unit runner under valgrind (CK_FORK=no)"
	@echo "make demo         bank_account on a throwaway PostgreSQL"
	@echo "                  (or on EVS_PG_DSN's), then evstore read"
	@echo "make deps         install missing Debian packages (root)"
	@echo "make bench        benchmarks beside pgbench (BENCH_QUICK=1: short)"
	@echo "make install      PREFIX=$(PREFIX) LIBDIR INCLUDEDIR BINDIR MANDIR DESTDIR"
	@echo "make uninstall    same variables"

-include $(LIB_OBJS:.o=.d) $(UNIT_OBJS:.o=.d) $(INTEG_OBJS:.o=.d) \
         $(EXAMPLES:=.d) $(TOOL_OBJS:.o=.d)
