# evstore: plain Makefile. `make` builds the library; `make check` runs the
# tests; `make demo` runs the example. See README.md.

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

CC      ?= cc
ver      = $(shell awk '/define EVS_VERSION_$(1) / {print $$3}' include/evstore/version.h)
MAJOR   := $(call ver,MAJOR)
MINOR   := $(call ver,MINOR)
PATCH   := $(call ver,PATCH)
VERSION := $(MAJOR).$(MINOR).$(PATCH)
# While MAJOR is 0, every minor release may break the ABI: 0.Y goes in the SONAME.
SONAME  := libevstore.so.$(if $(filter 0,$(MAJOR)),$(MAJOR).$(MINOR),$(MAJOR))
REALNAME:= libevstore.so.$(VERSION)

WARN     = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wwrite-strings
WERROR  ?= 1
WARN    += $(if $(filter 1,$(WERROR)),-Werror)
OPT     ?= -O2 -g
SAN     ?=
DEPS_CFLAGS = $(shell pkg-config --cflags libpq json-c)
DEPS_LIBS   = $(shell pkg-config --libs libpq json-c)
CHECK_CFLAGS = $(shell pkg-config --cflags check)
CHECK_LIBS   = $(shell pkg-config --libs check)
EVS_CFLAGS  = -std=c11 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden \
              -Iinclude -Ilib $(WARN) $(OPT) $(SAN) $(DEPS_CFLAGS) $(CFLAGS)
TEST_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Itest $(WARN) \
              $(OPT) $(SAN) $(DEPS_CFLAGS) $(CHECK_CFLAGS) $(CFLAGS)

BUILD   ?= build
LIB_SRCS := $(wildcard lib/*.c)
LIB_OBJS := $(LIB_SRCS:lib/%.c=$(BUILD)/lib/%.o)
HEADERS  := $(wildcard include/evstore/*.h)

UNIT_SRCS := $(wildcard test/unit/*.c) $(wildcard test/contract/*.c)
UNIT_OBJS := $(UNIT_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all check check-unit deps asan valgrind clean install uninstall demo

all: $(BUILD)/$(REALNAME) $(BUILD)/libevstore.a $(BUILD)/evstore.pc

$(BUILD)/lib/%.o: lib/%.c $(HEADERS) $(wildcard lib/*_int.h)
	@mkdir -p $(dir $@)
	$(CC) $(EVS_CFLAGS) -c -o $@ $<

$(BUILD)/$(REALNAME): $(LIB_OBJS) lib/evstore.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/evstore.map \
	    $(SAN) $(LDFLAGS) -o $@ $(LIB_OBJS) $(DEPS_LIBS) -pthread
	ln -sf $(REALNAME) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libevstore.so

$(BUILD)/libevstore.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $(LIB_OBJS)

$(BUILD)/evstore.pc: evstore.pc.in include/evstore/version.h Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

$(BUILD)/test/%.o: test/%.c $(HEADERS) $(wildcard test/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -c -o $@ $<

# The unit runner links the static library: no LD_LIBRARY_PATH games.
$(BUILD)/test/unit-runner: $(UNIT_OBJS) $(BUILD)/libevstore.a
	$(CC) $(SAN) $(LDFLAGS) -o $@ $(UNIT_OBJS) $(BUILD)/libevstore.a \
	    $(DEPS_LIBS) $(CHECK_LIBS) -pthread

deps:
	@scripts/deps.sh

check-unit: $(BUILD)/test/unit-runner
	$(BUILD)/test/unit-runner

check: deps
	@$(MAKE) --no-print-directory check-unit

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    check-unit

valgrind: deps
	@$(MAKE) --no-print-directory $(BUILD)/test/unit-runner
	CK_FORK=no valgrind --leak-check=full --errors-for-leak-kinds=all \
	    --error-exitcode=1 -q $(BUILD)/test/unit-runner

install: all
	install -D -m 755 $(BUILD)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sf $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libevstore.so
	install -D -m 644 $(BUILD)/libevstore.a $(DESTDIR)$(LIBDIR)/libevstore.a
	install -d $(DESTDIR)$(INCLUDEDIR)/evstore
	install -m 644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/evstore/
	install -D -m 644 $(BUILD)/evstore.pc $(DESTDIR)$(PKGCONFIGDIR)/evstore.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libevstore.so $(DESTDIR)$(LIBDIR)/libevstore.a \
	      $(DESTDIR)$(PKGCONFIGDIR)/evstore.pc
	rm -rf $(DESTDIR)$(INCLUDEDIR)/evstore

clean:
	rm -rf build build-asan
