/* SPDX-License-Identifier: BSD-2-Clause */
/* Lifecycle of the BPF object: open, configure, load, attach, destroy. */
#ifndef HOPTRACE_LOADER_H
#define HOPTRACE_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "hoptrace/events.h"

#define LOADER_MAX_FILTERS 64

struct loader_config {
	uint32_t capture_bytes; /* power of two, <= HT_MAX_CAPTURE */
	uint32_t ringbuf_bytes; /* all rings together; power of two, page multiple */
	uint32_t wakeup_bytes;	/* 0: wake up on every record */
	unsigned npids;
	uint32_t pids[LOADER_MAX_FILTERS];
	unsigned ncomms;
	char comms[LOADER_MAX_FILTERS][HT_COMM_LEN];
	unsigned nports;
	uint16_t ports[LOADER_MAX_FILTERS];
	bool no_tls; /* --no-tls: no OpenSSL uprobes, sockets are not matched to TLS sessions */
	bool inject; /* --repair=inject: traceparent injection (sock_ops + sk_msg) */
};

struct hoptrace_bpf;
struct tls_tracer;
struct injector;

struct loader {
	struct hoptrace_bpf *skel;
	struct tls_tracer *tls;	 /* OpenSSL probes, NULL with --no-tls */
	struct injector *inject; /* NULL unless --repair=inject and its self-test passed */
	int *ring_fds;		 /* one ring buffer per online CPU */
	unsigned nrings;
	uint32_t ring_bytes; /* size of each */
	int stats_fd;	     /* per-CPU stats map */
};

/* Open, configure, load and attach every program, and the OpenSSL uprobes of the selected
 * processes (cfg must outlive the loader). Returns 0 or -errno, with the reason logged (and
 * what to do about it). */
int loader__start(struct loader *ld, const struct loader_config *cfg);
/* Sum the per-CPU counters into out[HT_STAT__COUNT]. Returns 0 or -errno. */
int loader__read_stats(const struct loader *ld, uint64_t out[HT_STAT__COUNT]);
/* Detach and free everything. Safe on a loader that failed to start. */
void loader__destroy(struct loader *ld);
/* Name of a BPF stats counter. */
const char *loader__stat_name(int idx);

#endif
