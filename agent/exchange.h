/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * One HTTP exchange (a request and its response) becoming one span: trace context from the
 * headers, ids, parent, semantic-convention attributes, timing and status.
 */
#ifndef HOPTRACE_EXCHANGE_H
#define HOPTRACE_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>

#include "correlate.h"
#include "hoptrace/events.h"

struct http1_head;
struct path_param_allow;
struct mem_budget;
struct proc_table;
struct sampler_config;
struct sink;
struct span;

/* What building exchanges needs from the tracker, and nothing more. */
struct exchange_env {
	struct correlate *corr;	   /* requests in flight, for parents */
	struct mem_budget *budget; /* charged for each exchange until it finishes */
	struct proc_table *procs;  /* process resources */
	struct sink *sink;	   /* where finished spans go */
	int64_t mono_to_unix_ns;   /* add to a bpf_ktime_get_ns() stamp to get unix time */
	bool stitch;		   /* --repair=stitch */
	const char *proc_root;	   /* where threads' waits are read (NULL: /proc) */
	/* path parameters exported (--keep-path-params); NULL: none */
	const struct path_param_allow *keep_path_params;
	/* head sampling (sampler.h); NULL: every span is exported */
	const struct sampler_config *sampler;
};

/* What the tracker knows of the connection an exchange travels on. */
struct conn_info {
	uint64_t cookie; /* the connection's identity */
	uint32_t tgid;
	uint64_t proc_start_ns;
	int32_t fd;
	struct ht_tuple tuple; /* family 0: unknown (TLS session whose socket was not seen) */
	char comm[HT_COMM_LEN];
	bool tls; /* plaintext of a TLS session (HT_DATA_TLS): https */
};

/* The ring-buffer record being handled when an exchange starts or answers: who did the
 * I/O, when, and what BPF said about it. */
struct record_ctx {
	uint32_t tid;
	uint64_t ts_ns;		      /* monotonic */
	uint16_t flags;		      /* enum ht_data_flags */
	const struct ht_ctx_ids *ids; /* --repair=inject: BPF-chosen ids of this request */
};

struct exchange {
	struct span *span;
	struct inflight inflight; /* server exchanges, while being served */
	uint64_t start_ns;	  /* monotonic: first byte of the request */
	uint16_t status;	  /* response status, 0 until the response head */
	bool is_head;		  /* HEAD: the response has no body */
	bool is_connect;	  /* CONNECT: a 2xx response opens a tunnel */
	bool in_valid;		  /* server: arrived with a valid traceparent */
	bool in_tracestate;	  /* server: ... and a tracestate */
	bool peer_seen;		  /* the other end of the request was seen on this host */
	bool has_children;	  /* server: a client span took this span as its parent */
	/* The other end of this request on this host while both are open (same-host hop). */
	struct exchange *peer;
	/* server: the end of the client that received the whole response. Send events are
	 * stamped when the send returns, and on loopback the receiver can read the last
	 * byte before that: the response was sent by then. 0: none. */
	uint64_t end_cap_ns;
};

/* A request received on a server connection, in the record rec. NULL on allocation
 * failure or when the memory budget refuses it (counted in budget_drops). */
struct exchange *exchange_start_server(struct exchange_env *env, const struct conn_info *ci,
				       const struct http1_head *h, const struct record_ctx *rec);
/* Both ends of one request were seen on this host: name each side to the other, and stitch
 * the server span into the caller's trace when it lost the context (--repair=stitch). */
void exchange_link_peers(struct exchange_env *env, struct exchange *server,
			 struct exchange *client);
/* A request sent on a client connection, in the record rec; finds its parent. */
struct exchange *exchange_start_client(struct exchange_env *env, const struct conn_info *ci,
				       const struct http1_head *h, const struct record_ctx *rec);
/* The (final) response head with this status was seen, in the record rec. */
void exchange_answered(struct exchange_env *env, struct exchange *ex, uint16_t status,
		       const struct record_ctx *rec);
/* Finish at end_ns (monotonic) and hand the span to the sink. error: why the exchange
 * ended without a complete response, or NULL. Frees ex. */
void exchange_finish(struct exchange_env *env, struct exchange *ex, uint64_t end_ns,
		     const char *error);
/* Drop without emitting (already counted by the caller). Frees ex. */
void exchange_discard(struct exchange_env *env, struct exchange *ex);

/* Helpers exposed for unit tests. */
/* Text form of an address from struct ht_tuple (IPv4-mapped shown as IPv4). */
void tuple_addr_string(const uint8_t addr[16], char *out, size_t outlen);

#endif
