/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The TLS probe family's userspace half: finds the OpenSSL code that selected processes
 * run (every mapped libssl.so*, and executables such as node that export SSL_read and
 * SSL_write themselves) and attaches bpf/tls_progs.bpf.h's uprobes once per file (inode), for
 * all processes; the BPF side filters by selection. Processes that start later are found
 * through their exec events and a periodic rescan.
 */
#ifndef HOPTRACE_TLS_H
#define HOPTRACE_TLS_H

#include <stdbool.h>
#include <stdint.h>

struct hoptrace_bpf;
struct loader_config;
struct tls_tracer;

/* Which build of the TLS programs is loaded. */
enum tls_variant {
	TLS_OFF,
	TLS_PLAIN,	     /* bpf/tls.bpf.c: loads on every kernel */
	TLS_WITH_INJECT_CTX, /* bpf/tls_inject.bpf.c: also sets --repair=inject's context */
};

/* Before load: only the chosen variant loads, and is never auto-attached. */
void tls__configure(struct hoptrace_bpf *skel, enum tls_variant variant);
/* After attach: probe the OpenSSL code of the processes cfg selects with the loaded variant.
 * Files that cannot be probed are logged and skipped. Returns NULL only when out of
 * memory. */
struct tls_tracer *tls__start(struct hoptrace_bpf *skel, const struct loader_config *cfg,
			      enum tls_variant variant);
/* A selected process exec'd: probe its new image now, and look at its mappings again a
 * few times soon (libraries are mapped after exec, some only by dlopen). */
void tls__on_exec(struct tls_tracer *tt, uint32_t tgid, uint64_t now_ns);
/* Periodic work: due rescans. now_ns is CLOCK_MONOTONIC. Cheap when nothing is due. */
void tls__tick(struct tls_tracer *tt, uint64_t now_ns);
/* Detach every probe and free. NULL is ignored. */
void tls__destroy(struct tls_tracer *tt);

#endif
