# SPDX-License-Identifier: BSD-2-Clause
# hoptrace: one Makefile, out-of-tree build in $(OUT). `make V=1` shows commands.
# Fresh machines: use ./build.sh, which installs the Debian packages this needs first.

OUT ?= build
CC ?= cc
CLANG ?= clang
BPFTOOL ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
PROTOC_C ?= protoc-c
PKG_CONFIG ?= pkg-config
VMLINUX_H ?= $(OUT)/vmlinux.h
prefix ?= /usr/local
DESTDIR ?=
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
GEN := $(OUT)/gen

# ---- userspace flags ------------------------------------------------------------
LIBS := $(shell $(PKG_CONFIG) --libs libbpf libprotobuf-c libcurl zlib 2>/dev/null) -lelf -lz -lpthread
# the Prometheus endpoint (agent/httpd.c)
LIBS += $(shell $(PKG_CONFIG) --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)
# the embedded trace store (agent/store.c)
LIBS += $(shell $(PKG_CONFIG) --libs sqlite3 2>/dev/null || echo -lsqlite3)
# seccomp filter after start-up (agent/sandbox.c)
LIBS += -lseccomp
WARN := -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers
CPPFLAGS += -Iinclude -Iagent -I$(GEN) -D_GNU_SOURCE -DHOPTRACE_VERSION='"$(VERSION)"'
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 $(WARN) -MMD -MP -fno-strict-aliasing
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# ---- sources --------------------------------------------------------------------
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(OUT)/bpf/%.bpf.o,$(BPF_SRCS))
# every bpf/*.bpf.c is linked into one object (shared maps resolve to one instance)
SKELS := $(GEN)/hoptrace.skel.h
PROTOS := $(shell find proto -name '*.proto' 2>/dev/null | sort)
PROTO_C := $(patsubst proto/%.proto,$(GEN)/%.pb-c.c,$(PROTOS))
PROTO_H := $(PROTO_C:.c=.h)
LIB_SRCS := $(filter-out agent/main.c,$(sort $(wildcard agent/*.c agent/export/*.c)))
TOOL_SRCS := $(wildcard tools/*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)

# Two builds of the userspace code: release and ASan/UBSan (used by the test suite).
define objs_of
$(patsubst %.c,$(OUT)/$(1)/%.o,$(2))
endef
REL_LIB_OBJS := $(call objs_of,rel,$(LIB_SRCS)) $(patsubst $(GEN)/%.c,$(OUT)/rel/gen/%.o,$(PROTO_C))
SAN_LIB_OBJS := $(call objs_of,san,$(LIB_SRCS)) $(patsubst $(GEN)/%.c,$(OUT)/san/gen/%.o,$(PROTO_C))

TOOLS := $(patsubst tools/%.c,$(OUT)/%,$(TOOL_SRCS))
UNIT_TESTS := $(patsubst tests/unit/%.c,$(OUT)/san/tests/%,$(UNIT_SRCS))

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all run test unit-test bpf-test integration-test asan bench fuzz lint install clean deps

all: $(OUT)/hoptrace $(TOOLS)

asan: $(OUT)/san/hoptrace $(patsubst tools/%.c,$(OUT)/san/%,$(TOOL_SRCS))

# ---- BPF ------------------------------------------------------------------------
$(OUT)/vmlinux.h:
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Wextra -Werror \
	-Wno-unused-parameter -Wno-missing-field-initializers -Iinclude -Ibpf -I$(dir $(VMLINUX_H))

$(OUT)/bpf/%.bpf.o: bpf/%.bpf.c $(VMLINUX_H)
	$(call msg,BPF,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(BPF_CFLAGS) -MMD -MP -c $< -o $@

$(OUT)/bpf/hoptrace.o: $(BPF_OBJS)
	$(call msg,BPFLINK,$@)
	$(Q)$(BPFTOOL) gen object $@ $^

$(GEN)/hoptrace.skel.h: $(OUT)/bpf/hoptrace.o
	$(call msg,SKEL,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(BPFTOOL) gen skeleton $< name hoptrace_bpf > $@.tmp && mv $@.tmp $@

# ---- protobuf (OTLP) ------------------------------------------------------------
$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: proto/%.proto
	$(call msg,PROTOC,$<)
	$(Q)mkdir -p $(GEN)
	$(Q)$(PROTOC_C) --proto_path=proto --c_out=$(GEN) $<

# ---- the web UI's files, built into the binary (agent/ui_assets.c) ----------------
UI_FILES := $(sort $(wildcard ui/*.html ui/*.js ui/*.css))
$(GEN)/ui_assets_data.h: $(UI_FILES) ui/gen-assets.sh
	$(call msg,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)sh ui/gen-assets.sh $@ $(UI_FILES)

# ---- userspace ------------------------------------------------------------------
GENERATED := $(SKELS) $(PROTO_H) $(GEN)/ui_assets_data.h

$(OUT)/rel/%.o: %.c | $(GENERATED)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(OUT)/san/%.o: %.c | $(GENERATED)
	$(call msg,CC-SAN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

# generated protobuf-c code is not ours: no -Werror on it
$(OUT)/rel/gen/%.o: $(GEN)/%.c
	$(call msg,CC,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -O2 -g -c $< -o $@

$(OUT)/san/gen/%.o: $(GEN)/%.c
	$(call msg,CC-SAN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) $(SAN_FLAGS) -c $< -o $@

$(OUT)/rel/libhoptrace.a: $(REL_LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(OUT)/san/libhoptrace.a: $(SAN_LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(OUT)/hoptrace: $(OUT)/rel/agent/main.o $(OUT)/rel/libhoptrace.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LIBS) -o $@

$(OUT)/san/hoptrace: $(OUT)/san/agent/main.o $(OUT)/san/libhoptrace.a
	$(call msg,LD-SAN,$@)
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) $^ $(LIBS) -o $@

$(OUT)/%: $(OUT)/rel/tools/%.o $(OUT)/rel/libhoptrace.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LIBS) -o $@

$(OUT)/san/%: $(OUT)/san/tools/%.o $(OUT)/san/libhoptrace.a
	$(call msg,LD-SAN,$@)
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) $^ $(LIBS) -o $@

$(OUT)/san/tests/%: $(OUT)/san/tests/unit/%.o $(OUT)/san/libhoptrace.a
	$(call msg,LD-SAN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) $(SAN_FLAGS) $^ -lcmocka $(LIBS) -o $@

# ---- running and testing --------------------------------------------------------
RUN_ARGS ?=
run: $(OUT)/hoptrace
	$(OUT)/hoptrace $(RUN_ARGS)

unit-test: $(UNIT_TESTS) $(TOOLS) $(OUT)/san/hoptrace-collect
	$(Q)tests/run-unit.sh $(UNIT_TESTS)

bpf-test: $(OUT)/hoptrace
	$(Q)$(OUT)/hoptrace --self-test

integration-test: asan all
	$(Q)python3 tests/integration/run.py --agent $(OUT)/san/hoptrace --build $(OUT)

test: all asan $(UNIT_TESTS)
	$(Q)tests/run-all.sh $(OUT)

bench: all $(OUT)/otlp_bench $(OUT)/store_bench
	$(Q)tests/bench/run.sh $(OUT)

$(OUT)/otlp_bench: $(OUT)/rel/tests/bench/otlp_bench.o $(OUT)/rel/libhoptrace.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LIBS) -o $@

$(OUT)/store_bench: $(OUT)/rel/tests/bench/store_bench.o $(OUT)/rel/libhoptrace.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LIBS) -o $@

# ---- container image (deploy/Containerfile; README "Container image") -------------------
# image-rootfs: the runtime root file system from the host's files (deploy/mkrootfs.sh).
# image: that, built FROM scratch with Debian's buildah into a private store under
# $(IMAGE_DIR) (vfs: works on any file system), exported as an OCI archive. Pulls nothing.
IMAGE ?= hoptrace:$(VERSION)
IMAGE_DIR := $(OUT)/image
IMAGE_OCI := $(IMAGE_DIR)/hoptrace.oci.tar
BUILDAH = buildah --root $(abspath $(IMAGE_DIR))/storage --runroot $(abspath $(IMAGE_DIR))/run \
	--storage-driver vfs
# Both are rebuilt every time (a fraction of a second, then a few seconds): the host's
# libraries may have changed since.
.PHONY: image-rootfs image
image-rootfs: $(OUT)/hoptrace
	$(call msg,ROOTFS,$(IMAGE_DIR)/rootfs)
	$(Q)deploy/mkrootfs.sh $(OUT)/hoptrace $(IMAGE_DIR)/rootfs

image: image-rootfs deploy/Containerfile
	$(Q)$(BUILDAH) rmi -f $(IMAGE) >/dev/null 2>&1 || true
	$(Q)$(BUILDAH) build --quiet --build-arg VERSION=$(VERSION) -f deploy/Containerfile \
		-t $(IMAGE) $(IMAGE_DIR) >/dev/null
	$(Q)rm -f $(IMAGE_OCI)
	$(Q)$(BUILDAH) push --quiet $(IMAGE) oci-archive:$(abspath $(IMAGE_OCI)):$(IMAGE)
	$(Q)echo "image $(IMAGE): $$($(BUILDAH) images --format '{{.Size}}' $(IMAGE)) \
	(root file system $$(du -s --si $(IMAGE_DIR)/rootfs | cut -f1)); OCI archive $(IMAGE_OCI) \
	$$(du --si $(IMAGE_OCI) | cut -f1)"
# the image test (tests/integration/test_image.py) runs the root file system and reads the
# OCI archive
test: image

# libFuzzer harnesses (tests/fuzz/, run by tests/fuzz/run.sh; corpora in $(OUT)/fuzz/corpus-*).
#   make fuzz                       every harness for FUZZ_SECONDS (default 60) each
#   make fuzz FUZZ_RUNS=10000000    every harness for that many executions
#   make fuzz-short                 the kept crash inputs, then a few seconds each (the test suite)
FUZZ_SECONDS ?= 60
FUZZ_SHORT_SECONDS ?= 5
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(OUT)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SRCS_fuzz_http1 := agent/http1.c agent/text.c
FUZZ_SRCS_fuzz_traceparent := agent/traceparent.c
FUZZ_SRCS_fuzz_json_read := agent/json_read.c agent/text.c
FUZZ_SRCS_fuzz_target := agent/target.c
FUZZ_SRCS_fuzz_otlp_kv := agent/proc.c agent/resource.c agent/export/otlp_config.c agent/log.c \
	agent/stats.c agent/text.c agent/hashmap.c agent/k8s_parse.c agent/json_read.c
# the receiver's request path: the tool itself without its main(), and what it links
FUZZ_SRCS_fuzz_collect := tools/hoptrace-collect.c agent/export/otlp_gzip.c \
	agent/export/otlp_encode.c agent/export/otlp_config.c agent/text.c agent/log.c $(PROTO_C)
FUZZ_FLAGS_fuzz_collect := -Itools -DHOPTRACE_COLLECT_NO_MAIN
FUZZ_LIBS_fuzz_collect := -lprotobuf-c -lz -lm
$(OUT)/fuzz/fuzz_collect: tools/hoptrace-collect.c tools/hoptrace-collect.h | $(PROTO_H)
FUZZ_SRCS_fuzz_tracker := agent/tracker.c agent/exchange.c agent/correlate.c agent/http1.c \
	agent/span.c agent/proc.c agent/resource.c agent/stats.c agent/hashmap.c agent/audit.c \
	agent/budget.c agent/text.c agent/traceparent.c agent/threadwait.c agent/log.c \
	agent/export/otlp_config.c agent/target.c agent/route.c agent/sampler.c agent/k8s_parse.c \
	agent/json_read.c agent/logcap.c
# logcap.c updates the BPF map of log-writing processes (never in the harness: no --capture-logs)
FUZZ_LIBS_fuzz_tracker := -lbpf
FUZZ_SRCS_fuzz_maps := agent/procmaps.c agent/text.c
FUZZ_SRCS_fuzz_route := agent/route.c
FUZZ_SRCS_fuzz_log_json := agent/log.c agent/json_read.c agent/text.c
FUZZ_SRCS_fuzz_k8s := agent/k8s_parse.c agent/json_read.c agent/text.c
FUZZ_SRCS_fuzz_jaeger_json := agent/jaeger_json.c agent/json_read.c agent/text.c
FUZZ_SRCS_fuzz_analyze := agent/analyze.c agent/json_read.c agent/text.c agent/hashmap.c
# the converting span sources (otlp:, and jaeger:'s and tempo:'s answers); the sink for its
# string escaper
FUZZ_SRCS_fuzz_tsource := agent/tsource_otlp.c agent/tsource_remote.c agent/tsource_conv.c \
	agent/json_read.c agent/text.c agent/hashmap.c agent/sink_json.c agent/span.c \
	agent/resource.c agent/log.c agent/stats.c agent/k8s_parse.c agent/proc.c \
	agent/export/otlp_config.c

# the harness's sources are prerequisites too (second expansion): a merge that changes one
# must rebuild the harness, not leave a stale binary
.SECONDEXPANSION:
$(OUT)/fuzz/%: tests/fuzz/%.c $$(FUZZ_SRCS_$$*) $(wildcard agent/*.h agent/export/*.h include/hoptrace/*.h) | $(GENERATED)
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		$(CPPFLAGS) $(FUZZ_FLAGS_$*) $< $(FUZZ_SRCS_$*) $(FUZZ_LIBS_$*) -lcurl -o $@

.PHONY: fuzz-short
# (here, not at test: above: a prerequisite list is expanded where the rule is read)
test: $(FUZZ_TARGETS)

fuzz: $(FUZZ_TARGETS)
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=$(FUZZ_RUNS) tests/fuzz/run.sh $(OUT)

fuzz-short: $(FUZZ_TARGETS)
	$(Q)FUZZ_SECONDS=$(FUZZ_SHORT_SECONDS) FUZZ_RUNS= tests/fuzz/run.sh $(OUT)

lint:
	$(Q)clang-format --dry-run --Werror agent/*.c agent/*.h agent/export/*.c agent/export/*.h \
		bpf/*.c bpf/*.h tools/*.c include/hoptrace/*.h tests/unit/*.c

clean:
	rm -rf $(OUT)

# (files only: a root file system under $(OUT)/image has a var/lib/dpkg/status.d directory)
-include $(shell find $(OUT) -name '*.d' -type f 2>/dev/null)

# ---- kernel matrix (tests/kernels/) ---------------------------------------------
# The checks on the host's kernel and on Debian's 5.10, 6.1 and 6.12 kernels, each booted
# under qemu (TCG) on the host's own files. make test-kernel SERIES=6.1: that one only.
.PHONY: test-kernels test-kernel
test-kernels: all
	KMATRIX_BUILD=$(OUT) tests/kernels/matrix.sh

test-kernel: all
	@test -n "$(SERIES)" || { echo "usage: make test-kernel SERIES=5.10|6.1|6.12" >&2; exit 2; }
	KMATRIX_BUILD=$(OUT) tests/kernels/matrix.sh --no-host $(SERIES)

# ---- host install and the Debian package ----------------------------------------------
# make install [DESTDIR=/stage] [prefix=/usr/local]: the agent and its tools in $(bindir)
# (bin, not sbin: `hoptrace audit FILE` is for any user), their man pages (doc/), the
# README, and the systemd unit with ExecStart pointing at $(bindir). /etc/default/hoptrace
# is not written (configuration belongs to the admin): deploy/hoptrace.default is the
# commented example.
# make deb: the Debian package, built by dpkg-buildpackage (debian/) from a copy of the
# tree, into $(OUT)/deb/ (hoptrace_$(VERSION)_ARCH.deb). It needs debhelper
# (./build.sh deb installs it); `all` does not.
.PHONY: uninstall deb
bindir ?= $(prefix)/bin
mandir ?= $(prefix)/share/man
docdir ?= $(prefix)/share/doc/hoptrace
systemdunitdir ?= $(prefix)/lib/systemd/system
INSTALL ?= install
# LDFLAGS (empty by default) reach every link: Debian's hardening (-z relro -z now) in `make deb`
LIBS += $(LDFLAGS)
# deploy/hoptrace.service names the default prefix's binary; the installed copy names ours,
# and the man page installed with it (not in the source: `systemd-analyze verify` runs man)
UNIT_BIN_DEFAULT := /usr/local/bin/hoptrace

MAN1 := $(wildcard doc/*.1)
MAN8 := $(wildcard doc/*.8)

install: all
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(mandir)/man1 $(DESTDIR)$(mandir)/man8 \
		$(DESTDIR)$(docdir) $(DESTDIR)$(systemdunitdir)
	$(INSTALL) -m 0755 $(OUT)/hoptrace $(TOOLS) $(DESTDIR)$(bindir)/
	$(INSTALL) -m 0644 $(MAN1) $(DESTDIR)$(mandir)/man1/
	$(INSTALL) -m 0644 $(MAN8) $(DESTDIR)$(mandir)/man8/
	# the pages' footer names this version
	sed -i 's/"hoptrace [0-9][^"]*"/"hoptrace $(VERSION)"/' \
		$(patsubst doc/%,$(DESTDIR)$(mandir)/man1/%,$(MAN1)) \
		$(patsubst doc/%,$(DESTDIR)$(mandir)/man8/%,$(MAN8))
	$(INSTALL) -m 0644 README.md deploy/hoptrace.default $(DESTDIR)$(docdir)/
	sed -e 's|$(UNIT_BIN_DEFAULT)|$(bindir)/hoptrace|g' \
		-e 's|/usr/local/share/doc/hoptrace|$(docdir)|g' \
		-e 's|^Documentation=|Documentation=man:hoptrace(8) |' deploy/hoptrace.service \
		> $(DESTDIR)$(systemdunitdir)/hoptrace.service.tmp
	grep -q '^ExecStart=$(bindir)/hoptrace ' $(DESTDIR)$(systemdunitdir)/hoptrace.service.tmp
	chmod 0644 $(DESTDIR)$(systemdunitdir)/hoptrace.service.tmp
	mv $(DESTDIR)$(systemdunitdir)/hoptrace.service.tmp $(DESTDIR)$(systemdunitdir)/hoptrace.service

uninstall:
	rm -f $(DESTDIR)$(bindir)/hoptrace $(patsubst $(OUT)/%,$(DESTDIR)$(bindir)/%,$(TOOLS)) \
		$(patsubst doc/%,$(DESTDIR)$(mandir)/man1/%,$(MAN1)) \
		$(patsubst doc/%,$(DESTDIR)$(mandir)/man8/%,$(MAN8)) \
		$(DESTDIR)$(systemdunitdir)/hoptrace.service \
		$(DESTDIR)$(docdir)/README.md $(DESTDIR)$(docdir)/hoptrace.default
	-rmdir $(DESTDIR)$(docdir)

# The package is built from a copy (dpkg-buildpackage writes its results next to the source
# tree and its state into debian/): the files git knows, or every file outside build/ and
# .git when this is no git checkout. The copy builds with Debian's flags (hardening) in its
# own build/, never reusing objects compiled with other flags.
DEB_DIR := $(OUT)/deb
DEB_SRC := $(DEB_DIR)/hoptrace-$(VERSION)
deb:
	@dpkg-parsechangelog -l debian/changelog -S Version | grep -qx '$(VERSION)' || \
		{ echo "debian/changelog's version is not VERSION ($(VERSION)): add an entry (dch -v $(VERSION))" >&2; exit 1; }
	rm -rf $(DEB_SRC) $(DEB_DIR)/hoptrace_* $(DEB_DIR)/hoptrace-dbgsym_* && mkdir -p $(DEB_SRC)
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git ls-files -z --cached --others --exclude-standard | \
			xargs -0 sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done' sh | \
			tar --null -T - -cf - | tar -xf - -C $(DEB_SRC); \
	else \
		tar --exclude=./build --exclude=./.git -cf - . | tar -xf - -C $(DEB_SRC); \
	fi
	# make exports its command-line variables (OUT=, prefix=, ...): they must not reach the
	# copy's make, whose `make clean` would then remove our $(OUT) (debian/rules sets OUT too)
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES -u OUT \
		-u DESTDIR -u prefix -u bindir -u mandir -u docdir -u systemdunitdir \
		dpkg-buildpackage -b -us -uc -j$(or $(DEB_JOBS),2)
	rm -rf $(DEB_SRC)
	@ls -l $(DEB_DIR)/hoptrace_$(VERSION)_*.deb
