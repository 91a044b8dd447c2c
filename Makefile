# Makefile - builds circmon: libcircmon.a, the programs in bin/, the Check suites.
#
#   make                 all programs (bin/circmond, bin/circmonctl, bin/circmon-gen,
#                        bin/circmon-broker; each only once its main source exists)
#   make check           every tests/check_*.c, plain and with ASan/UBSan (the
#                        sanitized suites run the programs of build/asan/bin,
#                        built with ASan/UBSan too)
#   make check-valgrind  the plain suites under valgrind (CK_FORK=no)
#   make fuzz            the libFuzzer targets of tests/fuzz, FUZZ_SECONDS (60)
#                        each, after fuzz-regress; fails on any crash, leak,
#                        timeout or UB
#   make fuzz-regress    every input of tests/fuzz/regress/<target>/ once
#                        through its target (seconds; .ci/run runs it)
#   make bench-scale     sustained load and scale figures (tools/bench-scale.sh;
#                        minutes to tens of minutes: EVENTS, RATE, ... there)
#   make bench | demo | deps | install | clean
#
# Every library comes from pkg-config. Generated protobuf-c code lives in build/gen.

CC      ?= cc
PKG     ?= pkg-config
PROTOC  ?= protoc-c
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR  ?= $(PREFIX)/share/man
MAN_PAGES := $(wildcard man/*.[158])

LIBS_PC := libevent rdkafka libprotobuf-c hiredis libsystemd inih jansson

PC_CFLAGS := $(shell $(PKG) --cflags $(LIBS_PC))
PC_LIBS   := $(shell $(PKG) --libs $(LIBS_PC))
CHECK_CFLAGS = $(shell $(PKG) --cflags check)
CHECK_LIBS   = $(shell $(PKG) --libs check)

CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L \
           -Iinclude -Ibuild/gen $(PC_CFLAGS)
DEPFLAGS = -MMD -MP
LDFLAGS ?=
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer

# The generated code is not ours to fix: relax what protoc-c output trips on.
GEN_CFLAGS := -Wno-unused-parameter

# --- sources ---------------------------------------------------------------
PROTOS  := $(wildcard proto/circmon/v1/*.proto)
GEN_C   := $(patsubst proto/%.proto,build/gen/%.pb-c.c,$(PROTOS))
GEN_H   := $(GEN_C:.c=.h)

LIB_SRC := $(sort $(wildcard lib/*.c)) $(GEN_C)

DAEMON_SRC := $(sort $(wildcard daemon/*.c))
# The status page's files, embedded into circmond as build/gen/page_assets.c.
PAGE_FILES := $(sort $(wildcard daemon/page/*.html daemon/page/*.js daemon/page/*.css))
PAGE_GEN   := $(if $(PAGE_FILES),build/gen/page_assets.c)
CTL_SRC    := $(wildcard tools/circmonctl.c) $(sort $(wildcard tools/ctl_*.c))
GEN_SRC    := $(wildcard tools/circmon-gen.c) $(sort $(wildcard tools/gen_*.c))
BROKER_SRC := $(wildcard tools/circmon-broker.c)

# A program is built only once its main source exists; for circmond, once a
# daemon/*.c defines main (its file name is the daemon's business).
DAEMON_MAIN := $(if $(DAEMON_SRC),$(shell grep -l '^int main' $(DAEMON_SRC) 2>/dev/null))
PROGS :=
ifneq ($(DAEMON_MAIN),)
PROGS += bin/circmond
endif
ifneq ($(wildcard tools/circmonctl.c),)
PROGS += bin/circmonctl
endif
ifneq ($(GEN_SRC),)
PROGS += bin/circmon-gen
endif
ifneq ($(BROKER_SRC),)
PROGS += bin/circmon-broker
endif
# The same programs built with ASan/UBSan, for the sanitized suites (CM_BIN).
ASAN_PROGS := $(patsubst bin/%,build/asan/bin/%,$(PROGS))

# Check suites: every tests/check_*.c is one binary. Any other tests/*.c is a
# helper linked into every suite.
SUITE_SRC   := $(sort $(wildcard tests/check_*.c))
TSUPP_SRC   := $(filter-out $(SUITE_SRC),$(wildcard tests/*.c))
SUITES      := $(patsubst tests/%.c,build/tests/%,$(SUITE_SRC))
ASAN_SUITES := $(patsubst tests/%.c,build/asan/tests/%,$(SUITE_SRC))

# Object paths mirror source paths: lib/x.c -> build/obj/lib/x.o,
# build/gen/y.pb-c.c -> build/obj/build/gen/y.pb-c.o; build/asan/... likewise.
obj  = $(patsubst %.c,build/obj/%.o,$(1))
aobj = $(patsubst %.c,build/asan/obj/%.o,$(1))

LIB_OBJ    := $(call obj,$(LIB_SRC))
ALIB_OBJ   := $(call aobj,$(LIB_SRC))
TSUPP_OBJ  := $(call obj,$(TSUPP_SRC))
ATSUPP_OBJ := $(call aobj,$(TSUPP_SRC))

LIB  := build/libcircmon.a
ALIB := build/asan/libcircmon.a

ALL_OBJ := $(LIB_OBJ) $(ALIB_OBJ) $(TSUPP_OBJ) $(ATSUPP_OBJ) \
           $(call obj,$(DAEMON_SRC) $(CTL_SRC) $(GEN_SRC) $(BROKER_SRC) $(SUITE_SRC)) \
           $(call aobj,$(SUITE_SRC)) \
           $(call aobj,$(DAEMON_SRC) $(CTL_SRC) $(GEN_SRC) $(BROKER_SRC))

# --- environment for the tests -------------------------------------------
# The plain suites run the programs of bin/, the sanitized ones those of
# build/asan/bin (CM_BIN, read by tests/cm_bin.h, tools/demo.sh,
# tools/services.sh; the later CM_BIN of ASAN_ENV wins). Every sanitizer report,
# of the suite or of any program it starts, goes to a file under
# $$san_dir (set per suite by run_suites): a suite that leaves one fails,
# whatever its tests said. LSan checks the leaks of every process at exit;
# tests/lsan.supp holds the third-party leaks, each with its reason.
TEST_ENV := CM_TOP=$(CURDIR) CM_BIN=$(CURDIR)/bin CK_DEFAULT_TIMEOUT=$${CK_DEFAULT_TIMEOUT:-60}
ASAN_ENV := $(TEST_ENV) CK_TIMEOUT_MULTIPLIER=$${CK_TIMEOUT_MULTIPLIER:-3} \
            CM_BIN=$(CURDIR)/build/asan/bin \
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$$san_dir/asan \
            LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$$san_dir/ubsan

.PHONY: FORCE all test check check-plain check-asan check-valgrind tests tests-asan \
        bench bench-cluster bench-scale demo deps install uninstall clean fuzz fuzz-build fuzz-corpus fuzz-regress
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SECONDARY:

all: $(PROGS)

# --- generated protobuf-c code -------------------------------------------
build/gen/%.pb-c.c build/gen/%.pb-c.h: proto/%.proto
	@mkdir -p build/gen
	$(PROTOC) --c_out=build/gen -Iproto $<

# --- the status page, embedded ---------------------------------------------
# Each daemon/page/ file becomes a NUL-terminated byte array (od and awk: POSIX
# tools only), listed in cmd_page_files (daemon/page.h) under its URL path.
build/gen/page_assets.c: $(PAGE_FILES) Makefile
	@mkdir -p $(@D)
	@{ echo '/* page_assets.c - daemon/page/ embedded by the Makefile: generated, do not edit. */'; \
	  echo '#include "../../daemon/page.h"'; \
	  i=0; for f in $(PAGE_FILES); do \
	    echo "static const unsigned char f$$i[] = {"; \
	    od -An -v -tx1 "$$f" | awk '{ for (i = 1; i <= NF; i++) printf "0x%s,", $$i; print "" }'; \
	    echo '0x00};'; i=$$((i + 1)); \
	  done; \
	  echo 'const struct cmd_page_file cmd_page_files[] = {'; \
	  i=0; for f in $(PAGE_FILES); do \
	    echo "    {\"/$${f##*/}\", f$$i, sizeof(f$$i) - 1},"; i=$$((i + 1)); \
	  done; \
	  echo '};'; \
	  echo 'const size_t cmd_page_nfiles = sizeof(cmd_page_files) / sizeof(cmd_page_files[0]);'; \
	} > $@.tmp && mv $@.tmp $@
	@echo "embedded $(words $(PAGE_FILES)) page files into $@"

# --- compilation ----------------------------------------------------------
# Every object waits for the generated headers (order-only): any lib file may
# include them, and -MMD only knows that after the first compile.
build/obj/%.o: %.c | $(GEN_H)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(EXTRA_CFLAGS) $(DEPFLAGS) -c $< -o $@

build/asan/obj/%.o: %.c | $(GEN_H)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN_FLAGS) $(EXTRA_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(call obj,$(GEN_C)) $(call aobj,$(GEN_C)): EXTRA_CFLAGS = $(GEN_CFLAGS)
$(call obj,$(SUITE_SRC) $(TSUPP_SRC)) $(call aobj,$(SUITE_SRC) $(TSUPP_SRC)): \
	EXTRA_CFLAGS = $(CHECK_CFLAGS)

# --- library ---------------------------------------------------------------
# The archive is rebuilt whenever the list of its objects changes (a file
# added to or removed from lib/), not only when an object is newer.
build/lib.list: FORCE
	@mkdir -p $(@D)
	@echo '$(LIB_OBJ)' | cmp -s - $@ || echo '$(LIB_OBJ)' > $@

build/asan/lib.list: FORCE
	@mkdir -p $(@D)
	@echo '$(ALIB_OBJ)' | cmp -s - $@ || echo '$(ALIB_OBJ)' > $@

$(LIB): $(LIB_OBJ) build/lib.list
	rm -f $@
	$(AR) rcs $@ $(LIB_OBJ)

$(ALIB): $(ALIB_OBJ) build/asan/lib.list
	rm -f $@
	$(AR) rcs $@ $(ALIB_OBJ)

FORCE:

# --- programs --------------------------------------------------------------
define program
$(1): $$(call obj,$(2)) $$(LIB)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) $$(LDFLAGS) -o $$@ $$(call obj,$(2)) $$(LIB) $$(PC_LIBS) -lm
endef
$(eval $(call program,bin/circmond,$(DAEMON_SRC) $(PAGE_GEN)))
$(eval $(call program,bin/circmonctl,$(CTL_SRC)))
$(eval $(call program,bin/circmon-gen,$(GEN_SRC)))
$(eval $(call program,bin/circmon-broker,$(BROKER_SRC)))

# The sanitized programs: the same sources compiled with SAN_FLAGS, on the
# sanitized library.
define asan_program
$(1): $$(call aobj,$(2)) $$(ALIB)
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS) $$(SAN_FLAGS) $$(LDFLAGS) -o $$@ $$(call aobj,$(2)) $$(ALIB) $$(PC_LIBS) -lm
endef
$(eval $(call asan_program,build/asan/bin/circmond,$(DAEMON_SRC) $(PAGE_GEN)))
$(eval $(call asan_program,build/asan/bin/circmonctl,$(CTL_SRC)))
$(eval $(call asan_program,build/asan/bin/circmon-gen,$(GEN_SRC)))
$(eval $(call asan_program,build/asan/bin/circmon-broker,$(BROKER_SRC)))

# --- tests -------------------------------------------------------------------
build/tests/%: build/obj/tests/%.o $(TSUPP_OBJ) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TSUPP_OBJ) $(LIB) $(PC_LIBS) $(CHECK_LIBS) -lm

build/asan/tests/%: build/asan/obj/tests/%.o $(ATSUPP_OBJ) $(ALIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN_FLAGS) $(LDFLAGS) -o $@ $< $(ATSUPP_OBJ) $(ALIB) \
	    $(PC_LIBS) $(CHECK_LIBS) -lm

tests: $(SUITES)
tests-asan: $(ASAN_SUITES) $(ASAN_PROGS)

# Runs every suite even after a failure, then fails if any did. A suite
# also fails when it leaves a sanitizer report in its $$san_dir
# (build/san-reports/<label>-<suite>, emptied before it runs): the reports of
# the programs it started are there, not in its output.
# $(1): label, $(2): environment, $(3): binaries, $(4): command prefix
define run_suites
	@fail=0; n=0; failed=; mkdir -p build/test-logs; \
	for t in $(3); do \
	    n=$$((n + 1)); log=build/test-logs/$(1)-$${t##*/}.log; \
	    san_dir=$(CURDIR)/build/san-reports/$(1)-$${t##*/}; \
	    rm -rf $$san_dir; mkdir -p $$san_dir; \
	    echo "== $(1): $$t"; s0=$$(date +%s); \
	    env $(2) $(4) $$t > $$log 2>&1; rc=$$?; \
	    for r in $$san_dir/*; do \
	        [ -f "$$r" ] || continue; \
	        echo "!! $(1): sanitizer report $$r:" >> $$log; cat "$$r" >> $$log; \
	        [ $$rc -ne 0 ] || rc=99; \
	    done; \
	    cat $$log; \
	    if [ $$rc -ne 0 ]; then \
	        echo "!! $(1): $$t FAILED (exit $$rc)"; fail=$$((fail + 1)); \
	        failed="$$failed $${t##*/}"; \
	    fi; \
	    echo "== $(1): $${t##*/} took $$(( $$(date +%s) - s0 )) s"; \
	done; \
	for f in $$failed; do \
	    echo "!! $(1): the end of $$f's output (all of it: build/test-logs/$(1)-$$f.log):"; \
	    tail -n 40 build/test-logs/$(1)-$$f.log; \
	done; \
	echo "== $(1): $$n suites, $$fail failed$${failed:+:$$failed}"; \
	test $$fail -eq 0
endef

# Programs first: the plain suites run them from $CM_TOP/bin, the sanitized
# ones from build/asan/bin (CM_BIN). Both test flavours are built (in
# parallel with -j) before either runs, so the output stays readable.
check: all $(SUITES) $(ASAN_SUITES) $(ASAN_PROGS)
	$(call run_suites,check,$(TEST_ENV),$(SUITES),)
	$(call run_suites,check-asan,$(ASAN_ENV),$(ASAN_SUITES),)

check-plain: all $(SUITES)
	$(call run_suites,check,$(TEST_ENV),$(SUITES),)

check-asan: all $(ASAN_SUITES) $(ASAN_PROGS)
	$(call run_suites,check-asan,$(ASAN_ENV),$(ASAN_SUITES),)

check-valgrind: all $(SUITES)
	$(call run_suites,check-valgrind,$(TEST_ENV) CK_FORK=no \
	    CK_TIMEOUT_MULTIPLIER=$${CK_TIMEOUT_MULTIPLIER:-20},$(SUITES),\
	    valgrind -q --error-exitcode=1 --leak-check=full)

# --- benchmarks --------------------------------------------------------------
build/bench/bench_fold: build/obj/tests/bench/bench_fold.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(PC_LIBS) -lm

# --- fuzzing -------------------------------------------------------------------
# libFuzzer targets (tests/fuzz/fuzz_*.c) built with clang, against the library
# (and the generated protobuf-c code) compiled again, instrumented, into
# build/fuzz. The system's libprotobuf-c, jansson and inih are not
# instrumented. Seeds come from circmon-gen (tests/fuzz/corpus.sh) into
# build/fuzz/corpus; what a run learns stays in build/fuzz/work; a crash is
# saved as build/fuzz/artifacts/<target>-crash-<sha1>.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 10
FUZZ_RSS_MB  ?= 2048
FUZZ_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
              -fno-omit-frame-pointer
FUZZ_CFLAGS := -O1 -g -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L \
               -Iinclude -Ibuild/gen $(PC_CFLAGS) $(FUZZ_SAN)
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRC))
FUZZ_BINS    := $(addprefix build/fuzz/,$(FUZZ_TARGETS))
fobj = $(patsubst %.c,build/fuzz/obj/%.o,$(1))
FLIB_OBJ := $(call fobj,$(LIB_SRC))
FLIB     := build/fuzz/libcircmon.a
FUZZ_ENV := ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
            $(if $(wildcard /usr/lib/llvm-14/bin/llvm-symbolizer),\
                ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer)

build/fuzz/obj/%.o: %.c | $(GEN_H)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(EXTRA_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(call fobj,$(GEN_C)): EXTRA_CFLAGS = $(GEN_CFLAGS)

build/fuzz/lib.list: FORCE
	@mkdir -p $(@D)
	@echo '$(FLIB_OBJ)' | cmp -s - $@ || echo '$(FLIB_OBJ)' > $@

$(FLIB): $(FLIB_OBJ) build/fuzz/lib.list
	rm -f $@
	$(AR) rcs $@ $(FLIB_OBJ)

build/fuzz/fuzz_%: build/fuzz/obj/tests/fuzz/fuzz_%.o $(FLIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(FLIB) $(PC_LIBS) -lm

# the seed maker is a plain program on the plain library
build/fuzz/mkseeds: build/obj/tests/fuzz/mkseeds.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(PC_LIBS) -lm

build/fuzz/corpus/.stamp: tests/fuzz/corpus.sh build/fuzz/mkseeds bin/circmon-gen \
                          $(wildcard config/*.conf)
	sh tests/fuzz/corpus.sh build/fuzz/corpus
	@touch $@

fuzz-build: $(FUZZ_BINS)
fuzz-corpus: build/fuzz/corpus/.stamp

# The regression corpus: every past finding, fixed, stays in
# tests/fuzz/regress/<target>/ and runs once through its target (libFuzzer
# runs the files it is given, each once, and fails on a crash, leak, timeout,
# UB or an allocation past FUZZ_RSS_MB). Runs every target, then fails if any
# failed.
FUZZ_REGRESS_TIMEOUT ?= $(FUZZ_TIMEOUT)
fuzz-regress: $(FUZZ_BINS)
	@fail=0; n=0; \
	for t in $(FUZZ_TARGETS); do \
	    files=$$(find tests/fuzz/regress/$$t -type f 2>/dev/null | sort); \
	    [ -n "$$files" ] || continue; \
	    k=$$(echo "$$files" | wc -l); n=$$((n + k)); \
	    if env $(FUZZ_ENV) build/fuzz/$$t -timeout=$(FUZZ_REGRESS_TIMEOUT) \
	        -rss_limit_mb=$(FUZZ_RSS_MB) $$files </dev/null >build/fuzz/$$t.regress.log 2>&1; \
	    then echo "== fuzz-regress: $$t: $$k inputs pass"; \
	    else echo "!! fuzz-regress: $$t FAILED"; tail -60 build/fuzz/$$t.regress.log; \
	        fail=$$((fail + 1)); fi; \
	done; \
	echo "== fuzz-regress: $$n inputs, $$fail targets failed"; \
	test $$fail -eq 0

# The whole test suite, the README's test command and what .ci/run runs:
# every Check suite plain and sanitized, then the fuzz regression corpus and
# the fuzz targets for FUZZ_SECONDS (any crash fails).
test:
	$(MAKE) check
	$(MAKE) fuzz-regress
	$(MAKE) fuzz

# Runs every target even after a crash, then fails if any did. A target
# without its own dictionary (tests/fuzz/<target>.dict) takes that of the
# messages. Standard input is /dev/null: no input may come from elsewhere.
fuzz: $(FUZZ_BINS) build/fuzz/corpus/.stamp fuzz-regress
	@mkdir -p build/fuzz/artifacts; fail=0; \
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p build/fuzz/work/$$t; \
	    dict=tests/fuzz/$$t.dict; [ -f $$dict ] || dict=tests/fuzz/fuzz_decode.dict; \
	    echo "== fuzz: $$t for $(FUZZ_SECONDS) s"; \
	    if env $(FUZZ_ENV) build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) \
	        -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=$(FUZZ_RSS_MB) -print_final_stats=1 \
	        -dict=$$dict -artifact_prefix=build/fuzz/artifacts/$$t- \
	        build/fuzz/work/$$t build/fuzz/corpus/$$t </dev/null >build/fuzz/$$t.log 2>&1; \
	    then grep -E '^#[0-9]+' build/fuzz/$$t.log | tail -1; grep -E '^stat::' build/fuzz/$$t.log; \
	    else echo "!! fuzz: $$t FAILED"; \
	        grep -v -E '^#[0-9]+[[:space:]]+(INITED|NEW|REDUCE|pulse)' build/fuzz/$$t.log | tail -60; \
	        fail=$$((fail + 1)); fi; \
	done; \
	echo "== fuzz: $(words $(FUZZ_TARGETS)) targets, $$fail failed"; \
	test $$fail -eq 0

# --- scripts written elsewhere ---------------------------------------------
# Redis Cluster against one Redis (tests/bench_cluster.sh); figures only.
bench-cluster: all
	CM_TOP=$(CURDIR) bash tests/bench_cluster.sh

bench: all build/bench/bench_fold
	@if [ -x tests/bench.sh ] || [ -f tests/bench.sh ]; then \
	    CM_TOP=$(CURDIR) bash tests/bench.sh; \
	else echo "tests/bench.sh does not exist yet" >&2; exit 1; fi

bench-scale: all
	CM_TOP=$(CURDIR) bash tools/bench-scale.sh

demo:
	@if [ -f tools/demo.sh ]; then \
	    CM_TOP=$(CURDIR) bash tools/demo.sh; \
	else echo "tools/demo.sh does not exist yet" >&2; exit 1; fi

deps:
	tools/install-deps.sh

# --- install -----------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(BINDIR)
	$(if $(PROGS),install -m 0755 $(PROGS) $(DESTDIR)$(BINDIR)/)
	install -d $(DESTDIR)$(SYSCONFDIR)/circmon
	install -m 0644 config/circmond.conf.example \
	    $(DESTDIR)$(SYSCONFDIR)/circmon/circmond.conf.example
	@if [ -f systemd/circmond.service ]; then \
	    echo "install -m 0644 systemd/circmond.service $(DESTDIR)$(UNITDIR)/"; \
	    install -d $(DESTDIR)$(UNITDIR) && \
	    install -m 0644 systemd/circmond.service $(DESTDIR)$(UNITDIR)/; \
	fi
	@for m in $(MAN_PAGES); do \
	    s=$${m##*.}; echo "install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/"; \
	    install -d $(DESTDIR)$(MANDIR)/man$$s && \
	    install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/ || exit 1; \
	done

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(PROGS)))
	rm -f $(DESTDIR)$(SYSCONFDIR)/circmon/circmond.conf.example
	rm -f $(DESTDIR)$(UNITDIR)/circmond.service
	rm -f $(foreach m,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m)))

clean:
	rm -rf build bin

-include $(ALL_OBJ:.o=.d)
-include $(patsubst %.o,%.d,$(FLIB_OBJ) $(call fobj,$(FUZZ_SRC)) build/obj/tests/fuzz/mkseeds.o)
