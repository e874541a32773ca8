/* SPDX-License-Identifier: BSD-2-Clause */
/* Lifecycle of the BPF object: open, configure, load, attach, destroy. */
#ifndef HOPTRACE_LOADER_H
#define HOPTRACE_LOADER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "hoptrace/events.h"
#include "kernel.h"
#include "tls.h"

#define LOADER_MAX_FILTERS 64
#define LOADER_WHY_LEN 256

/* How socket I/O is captured (bpf/sock.bpf.h). AUTO: the first that loads, in this order. */
enum capture_backend {
	CAPTURE_AUTO = 0,
	CAPTURE_TP_BTF,	  /* tp_btf sock_send_length/sock_recv_length */
	CAPTURE_FEXIT,	  /* fexit on inet{,6}_{send,recv}msg, inet_sendpage */
	CAPTURE_SYSCALLS, /* syscall entry and exit tracepoints */
	CAPTURE__COUNT,
};

struct sampler_config;

struct loader_config {
	/* head sampling, for the flags of injected headers (bpf/inject.bpf.h); NULL: the
	 * defaults (parent-based, always on) */
	const struct sampler_config *sampler;
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
	enum capture_backend capture; /* --capture; AUTO by default */
	/* --capture-logs: log writes of server processes (bpf/logs.bpf.c), and the identities
	 * of the --capture-log-file files with the index of the file each names */
	bool capture_logs;
	unsigned nlog_keys;
	struct ht_log_file_key log_keys[HT_MAX_LOG_KEYS];
	uint32_t log_key_file[HT_MAX_LOG_KEYS];
};

/* What was chosen for each function, and why the better choices were not. */
struct load_plan {
	enum capture_backend capture;
	char capture_why[CAPTURE__COUNT][LOADER_WHY_LEN]; /* why not used; "" when untried */
	bool exit_group_dead;				  /* which ht_exit program */
	enum tls_variant tls;
	char tls_why[LOADER_WHY_LEN]; /* why TLS is off, or plain under --repair=inject */
	bool inject;
	char inject_why[LOADER_WHY_LEN]; /* why injection is off although asked for */
};

struct hoptrace_bpf;
struct tls_tracer;
struct injector;

struct bpf_link;

struct loader {
	struct kernel_facts kernel;
	struct load_plan plan;
	struct hoptrace_bpf *skel;
	struct bpf_link **sys_links; /* syscall tracepoints (CAPTURE_SYSCALLS) */
	unsigned nsys_links;
	struct tls_tracer *tls;	 /* OpenSSL probes, NULL with --no-tls */
	struct injector *inject; /* NULL unless --repair=inject and its self-test passed */
	int *ring_fds;		 /* one ring buffer per online CPU */
	unsigned nrings;
	uint32_t ring_bytes;	       /* size of each */
	int stats_fd;		       /* per-CPU stats map */
	struct bpf_link *log_links[4]; /* --capture-logs: write, pwrite64, writev, pwritev */
	bool logs_on;		       /* --capture-logs and its programs are attached */
};

/* Probe the kernel, then open, configure, load and attach the programs it can run (falling
 * back to the next capture backend, or switching a feature off with one log line, when a
 * program does not load), and the OpenSSL uprobes of the selected processes (cfg must
 * outlive the loader). Returns 0 or -errno, with the reason logged (the missing kernel
 * feature, and the oldest kernel that has it). */
int loader__start(struct loader *ld, const struct loader_config *cfg);
/* Sum the per-CPU counters into out[HT_STAT__COUNT]. Returns 0 or -errno. */
int loader__read_stats(const struct loader *ld, uint64_t out[HT_STAT__COUNT]);
/* Detach and free everything. Safe on a loader that failed to start. */
void loader__destroy(struct loader *ld);
/* Print the kernel, the program chosen for each function, and each feature on or off with
 * the reason (self-test, -v). */
void loader__describe(const struct loader *ld, FILE *out);
/* Name of a capture backend, as --capture takes it. */
const char *loader__capture_name(enum capture_backend b);
/* Parse a --capture value. Returns 0, or -EINVAL. */
int loader__parse_capture(const char *s, enum capture_backend *out);
/* The map of processes whose log writes are recorded (--capture-logs), or -1 when log
 * capture is off. */
int loader__log_procs_fd(const struct loader *ld);
/* Name of a BPF stats counter. */
const char *loader__stat_name(int idx);

#endif
