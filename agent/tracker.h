/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The tracker: turns the kernel's records into spans. It keeps one connection per socket
 * cookie with a stream per direction (reassembled by position, gaps announced to the
 * parser), pairs requests with responses in FIFO order (HTTP/1.1 answers in request
 * order), builds SERVER spans for requests received and CLIENT spans for requests sent,
 * links client spans to the server request they serve, and hands finished spans to the
 * sink.
 */
#ifndef HOPTRACE_TRACKER_H
#define HOPTRACE_TRACKER_H

#include <stdbool.h>
#include <stdint.h>

#include "budget.h"
#include "correlate.h"
#include "exchange.h"
#include "hashmap.h"
#include "hoptrace/events.h"
#include "logcap.h"
#include "proc.h"
#include "route.h"

struct sink;

/* Table sizes; 0: the default. Tests use small ones to reach the limits fast. */
struct tracker_limits {
	size_t conns;		 /* connections tracked */
	size_t tuple_index;	 /* connections indexed by address, for same-host hops */
	size_t procs;		 /* processes with a cached resource */
	size_t inflight_procs;	 /* processes with server requests in flight */
	size_t inflight_threads; /* threads with server requests in flight */
};

struct tracker_options {
	uint64_t idle_timeout_ns;    /* connections with nothing in flight are forgotten */
	uint64_t request_timeout_ns; /* requests with no answer end with an error */
	bool stitch;		     /* --repair=stitch: join same-host hops that lost context */
	const char *proc_root;	     /* NULL: /proc (tests point elsewhere) */
	/* path parameters exported (--keep-path-params); NULL: none. Outlives the tracker. */
	const struct path_param_allow *keep_path_params;
	/* --route patterns (NULL: none; outlives the tracker) and --max-routes-per-service
	 * (0: ROUTE_PER_SERVICE_DEFAULT) */
	const struct route_patterns *routes;
	unsigned max_routes_per_service;
	struct tracker_limits limits;
	size_t memory_limit; /* --memory-limit: bytes of connection and request state, 0: none */
	/* head sampling (--sampler, OTEL_TRACES_SAMPLER); NULL: every span exported. Outlives
	 * the tracker. */
	const struct sampler_config *sampler;
	/* --capture-logs (the BPF map is given later: logcap__set_map), and the named log
	 * files (outlive the tracker) */
	bool capture_logs;
	const struct logcap_files *log_files;
};

struct tracker {
	struct tracker_options opt;
	struct u64map conns;	      /* cookie -> struct conn */
	struct u64map conns_by_tuple; /* hash of a conn's (local, remote) tuple -> conn */
	struct proc_table procs;
	struct correlate corr;
	struct sink *sink;
	struct mem_budget budget;  /* connections, requests waiting, parser buffers */
	int64_t mono_to_unix_ns;   /* add to a bpf_ktime_get_ns() stamp to get unix time */
	struct route_table routes; /* distinct routes per service, capped */
	struct exchange_env env;   /* the above, as exchange building sees them */
	struct logcap logs;	   /* --capture-logs */
	/* told of every exec record (a new image may bring OpenSSL code to probe) */
	void (*on_exec)(void *ctx, uint32_t tgid, uint64_t ts_ns);
	void *on_exec_ctx;
};

int tracker__init(struct tracker *t, struct sink *sink, const struct tracker_options *opt);
/* End every open request (reason: the agent stopped) and free everything. */
void tracker__shutdown(struct tracker *t);
/* One ring-buffer record (any kind). len is the record's size. */
void tracker__handle_record(struct tracker *t, const void *data, size_t len);
/* Periodic work: idle connections, stale requests, exited processes. now is CLOCK_MONOTONIC. */
void tracker__tick(struct tracker *t, uint64_t now_ns);
/* Call fn(ctx, tgid, ts_ns) for each exec record, after the tracker has handled it. */
void tracker__on_exec(struct tracker *t, void (*fn)(void *ctx, uint32_t tgid, uint64_t ts_ns),
		      void *ctx);
/* Connections currently tracked. */
size_t tracker__conn_count(const struct tracker *t);
/* Bytes of the memory budget in use. */
size_t tracker__budget_used(const struct tracker *t);

#endif
