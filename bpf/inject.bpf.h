/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Trace context for --repair=inject, kept in BPF because userspace learns of a request
 * too late to choose the ids a downstream call carries:
 *
 *   server_ctxs    per thread: the server request it serves (trace id, server span id),
 *                  set when a selected thread reads a request start line; more than one in
 *                  flight, or a request read from a non-blocking socket (an event loop): no
 *                  context. Never used once the request is answered (a response start line
 *                  on its connection, by any thread), once its connection closed, or past
 *                  HT_CTX_MAX_AGE_NS: a thread that served a request and later calls out on
 *                  its own (a timer) must not carry that old trace.
 *   server_conns   per connection: the thread whose context its request set, so that the
 *                  response written by another thread, or the close, ends that context.
 *   inject_handoff per thread: what the sk_msg program injected, taken by the send handler
 *                  of the same write (it runs after sk_msg within the same syscall).
 *
 * Both sides put the ids in the data event of the request (HT_DATA_CTX) so the spans take
 * exactly them. Everything here is skipped unless inject_enabled.
 */
#ifndef HOPTRACE_INJECT_BPF_H
#define HOPTRACE_INJECT_BPF_H

#include "common.bpf.h"

#define HT_MAX_CTX_THREADS 16384
/* HT_CTX_MAX_AGE_NS (include/hoptrace/events.h): a server context older than this is stale
 * whatever else was seen (its answer or close went unseen): it is never used. */

const volatile __u8 inject_enabled __shared = 0;
/* Head sampling (agent/sampler.h), so that injected headers carry the agent's decision:
 * sampler_root 0 always_on, 1 always_off, 2 trace-id ratio with sampler_threshold. */
const volatile __u8 sampler_parent_based __shared = 1;
const volatile __u8 sampler_root __shared = 0;
const volatile __u64 sampler_threshold __shared = 0;

/* The sampled flag for ids (the rule of agent/sampler.c sampler_decide): a parent's flag
 * under a parent-based sampler, else the root rule on the 56 rightmost bits of the trace
 * id. Other flag bits are kept. */
static __always_inline void sampler_mark(struct ht_ctx_ids *ids, bool has_parent)
{
	__u64 r = 0;
	bool keep;

	if (sampler_parent_based && has_parent)
		return;
	if (sampler_root == 1) {
		keep = false;
	} else if (sampler_root == 2) {
#pragma unroll
		for (int i = 9; i < 16; i++)
			r = r << 8 | ids->trace_id[i];
		keep = r >= sampler_threshold;
	} else {
		keep = true;
	}
	ids->flags = (ids->flags & ~1) | (keep ? 1 : 0);
}

struct server_ctx {
	struct ht_ctx_ids ids;
	__u64 start_ns;
	__u32 inflight;	   /* requests read and not yet answered by this thread */
	__u32 nonblocking; /* read from a non-blocking socket: the thread may multiplex, so
			    * its calls get a new root, as in userspace (agent/correlate.h) */
	__u64 conn;	   /* connection of the request that set it (ev.cookie) */
	__u32 answered;	   /* that request was answered: never used again */
	__u32 _pad;
};

/* Sized to 1 by the loader without --repair=inject: no cost then. Preallocated: uprobe
 * programs use it, and before 6.1 a tracing program using a hash allocated at run time
 * makes the kernel WARN (and a PREEMPT_RT kernel refuse the program). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HT_MAX_CTX_THREADS);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct server_ctx);
} server_ctxs SEC(".maps") __shared;

/* Which thread's context a connection's request set (server_ctx.start_ns tells that the
 * context is still the one this request set). LRU: an entry whose answer and close went
 * unseen must not stay; a context whose entry was evicted ends by its age. Preallocated, as
 * server_ctxs; sized to 1 without --repair=inject. */
struct server_conn {
	__u64 pid_tgid;
	__u64 start_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HT_MAX_CTX_THREADS);
	__type(key, __u64); /* ev.cookie of the connection */
	__type(value, struct server_conn);
} server_conns SEC(".maps") __shared;

/* Where an enrolled socket's outgoing stream is in its HTTP/1 framing: the sk_msg program
 * injects only into a message that starts at a request boundary, never into a body. */
enum inject_framing {
	HT_FRAME_BOUNDARY = 0, /* the next byte written starts a request */
	HT_FRAME_BODY,	       /* body_left bytes of a Content-Length body come first */
	HT_FRAME_UNKNOWN,      /* lost track (chunked, split header block, not HTTP, an
				* upgrade): nothing more is injected on this socket */
};

struct inject_sock {
	__u8 marked;  /* a selected task connected it: sock_ops enrols it */
	__u8 framing; /* enum inject_framing */
	__u8 _pad[6];
	__u64 body_left;
};

/* Sockets that selected tasks connected: enrolled by sock_ops once established, and their
 * framing. Always created (the capture programs refer to it), empty without
 * --repair=inject. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inject_sock);
} inject_marks SEC(".maps") __shared;

/* tgids enrolled whatever the selection (the start-up self-test's child). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u8);
} inject_force SEC(".maps") __shared;

struct handoff {
	struct ht_ctx_ids ids;
	__u16 lport; /* the socket written to (sk_msg cannot read the socket cookie) */
	__u16 rport;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH); /* preallocated, as server_ctxs */
	__uint(max_entries, HT_MAX_CTX_THREADS);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct handoff);
} inject_handoff SEC(".maps") __shared;

/* A context that may still lend its trace: its request not answered, and fresh. */
static __always_inline bool server_ctx_live(const struct server_ctx *sc)
{
	return !sc->answered && bpf_ktime_get_ns() - sc->start_ns < HT_CTX_MAX_AGE_NS;
}

static __always_inline void random_bytes(__u8 *dst, int n)
{
	for (int i = 0; i < n; i += 4) {
		__u32 r = bpf_get_prandom_u32();

		__builtin_memcpy(dst + i, &r, 4);
	}
}

static __always_inline char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static __always_inline int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Is "traceparent:" (any case) at p? No string constants: static data does not survive the
 * object link. */
static __always_inline bool is_tp_name(const char *b)
{
	return ascii_lower(b[0]) == 't' && ascii_lower(b[1]) == 'r' && ascii_lower(b[2]) == 'a' &&
	       ascii_lower(b[3]) == 'c' && ascii_lower(b[4]) == 'e' && ascii_lower(b[5]) == 'p' &&
	       ascii_lower(b[6]) == 'a' && ascii_lower(b[7]) == 'r' && ascii_lower(b[8]) == 'e' &&
	       ascii_lower(b[9]) == 'n' && ascii_lower(b[10]) == 't' && b[11] == ':';
}

/* Decode n hex digits at p into n/2 bytes. Returns false on a non-hex digit. */
static __always_inline bool hex_decode(__u8 *dst, const char *p, int n)
{
	for (int i = 0; i < n; i += 2) {
		int hi = hex_val(p[i]), lo = hex_val(p[i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		dst[i / 2] = (__u8)(hi << 4 | lo);
	}
	return true;
}

/* The value of a traceparent header at p: "vv-<32 hex>-<16 hex>-<2 hex>" (W3C Trace
 * Context 3.2). Returns true with the trace id, parent id and flags when it is valid. */
static __always_inline bool parse_traceparent(const char *p, struct ht_ctx_ids *out)
{
	__u8 ver[1], fl[1];
	__u64 a = 0, b = 0, c = 0;

	if (!hex_decode(ver, p, 2) || ver[0] == 0xff || p[2] != '-' || p[35] != '-' || p[52] != '-')
		return false;
	if (!hex_decode(out->trace_id, p + 3, 32) || !hex_decode(out->parent_id, p + 36, 16) ||
	    !hex_decode(fl, p + 53, 2))
		return false;
	if (ver[0] == 0 && p[55] != '\r' && p[55] != ' ' && p[55] != '\t')
		return false; /* version 00 has nothing after the flags */
	__builtin_memcpy(&a, out->trace_id, 8);
	__builtin_memcpy(&b, out->trace_id + 8, 8);
	__builtin_memcpy(&c, out->parent_id, 8);
	if ((!a && !b) || !c)
		return false;
	out->flags = fl[0];
	return true;
}

#endif
