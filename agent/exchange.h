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
struct route_table;
struct mem_budget;
struct proc_table;
struct sink;
struct resource;
struct span;

/* What building exchanges needs from the tracker, and nothing more. */
struct sampler_config;

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
	/* routes that name spans (http.route, url.template); NULL: spans named by the path */
	struct route_table *routes;
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

/* A piece of an exchange's text, in its string room (struct exchange.strs). */
struct text_ref {
	uint16_t off;
	uint16_t len;
};

/* Up to this many ambiguous parents are linked (SPAN_MAX_LINKS). */
#define EXCHANGE_MAX_LINKS 2

/*
 * A request waiting for its response: a compact record of what its span is made of, not
 * the span. Ids, times, the decisions taken when the request was seen (its parent, the
 * audit of its propagation) and copies of the head's strings, each cut where the span would
 * cut it, in a string room sized to them. A pending request costs the budget a few hundred
 * bytes instead of a ~3 KB span; the span is built when the exchange finishes
 * (exchange_finish), by the one function that sets its attributes.
 */
struct exchange {
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

	/* ---- what the span is built from ---- */
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8]; /* all zero: root */
	uint8_t trace_flags;
	bool not_exported;     /* head sampling said no: only what metrics need is built */
	uint8_t kind;	       /* enum span_kind */
	uint8_t version_minor; /* HTTP/1.x */
	uint8_t target_form;   /* enum target_form */
	bool tls;	       /* https */
	bool method_known;     /* one of the semconv methods, else exported as _OTHER */
	bool host_v6;	       /* the Host header's host is an IPv6 literal */
	bool target_host_v6;   /* ... and the absolute-form target's */
	bool stitched;	       /* --repair=stitch joined it to its same-host caller */
	uint8_t nlinks;	       /* client: ambiguous parents linked */
	uint32_t pid, tid;
	int32_t host_port;	   /* from the Host header; 0: none */
	int32_t target_port;	   /* from an absolute-form target; 0: none */
	struct resource *resource; /* counted reference, handed to the span */
	/* the process at the other end of a same-host hop (counted reference): the span names
	 * its service as caller (server) or callee (client). NULL: none seen. */
	struct resource *peer_resource;
	bool peer_linked;
	struct ht_tuple tuple; /* family 0: unknown */
	/* server: hoptrace.traceparent.received; client: hoptrace.traceparent.sent */
	const char *traceparent_seen;
	/* client: the parent decision and the audit of the call (static strings or enums) */
	uint8_t parent_conf;	  /* enum parent_confidence */
	uint8_t parent_reason;	  /* enum parent_reason */
	uint8_t propagation;	  /* enum propagation_result; PROP_NONE: unclassified */
	uint8_t propagation_conf; /* enum parent_confidence of the request audited */
	bool tracestate_dropped;
	const char *unclassified; /* why the call was not classified; NULL: classified */
	struct {
		uint8_t trace_id[16];
		uint8_t span_id[8];
	} links[EXCHANGE_MAX_LINKS];
	/* text, in strs: method as sent (at most 32 bytes), redacted path, an absolute-form
	 * target's scheme and host, the Host header's host, User-Agent, W3C tracestate */
	struct text_ref method, path, target_scheme, target_host, host, user_agent, tracestate;
	/* --capture-logs, server: log lines written while it was served (logcap.h), handed to
	 * the span, and the line being written; charged to the budget (logs_charged) until then */
	struct span_events *events;
	struct log_partial *partial;
	uint32_t dropped_events;
	bool logs_charged;
	uint16_t strs_len;
	char strs[];
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
/* Finish at end_ns (monotonic): build the span and hand it to the sink. error: why the
 * exchange ended without a complete response, or NULL. Frees ex. */
void exchange_finish(struct exchange_env *env, struct exchange *ex, uint64_t end_ns,
		     const char *error);
/* Drop without emitting (already counted by the caller). Frees ex. */
void exchange_discard(struct exchange_env *env, struct exchange *ex);

/* Helpers exposed for unit tests. */
/* Text form of an address from struct ht_tuple (IPv4-mapped shown as IPv4). */
void tuple_addr_string(const uint8_t addr[16], char *out, size_t outlen);

#endif
