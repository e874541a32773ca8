// SPDX-License-Identifier: BSD-2-Clause
#include "exchange.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "budget.h"
#include "http1.h"
#include "proc.h"
#include "resource.h"
#include "sampler.h"
#include "sink.h"
#include "span.h"
#include "stats.h"
#include "target.h"
#include "text.h"
#include "threadwait.h"
#include "traceparent.h"

#define W3C_FLAG_SAMPLED 0x01

/* ---- small helpers ----------------------------------------------------------------- */

/* Text built into a fixed buffer, truncated to fit and always NUL-terminated: the span
 * strings of every request are assembled with this rather than snprintf, which was a tenth
 * of the agent's instructions per request. */
struct text_out {
	char *buf;
	size_t cap; /* including the NUL */
	size_t len;
};

static void out_put(struct text_out *o, const char *s, size_t n)
{
	size_t room = o->cap - 1 - o->len;

	n = strnlen(s, n); /* as printf's %.*s: a NUL in the traffic ends the string */
	if (n > room)
		n = room;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void out_put_uint(struct text_out *o, unsigned v)
{
	char digits[TEXT_U64_DIGITS_MAX];

	out_put(o, digits, (size_t)(text_put_u64(digits, v) - digits));
}

void tuple_addr_string(const uint8_t addr[16], char *out, size_t outlen)
{
	static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (!outlen)
		return;
	out[0] = '\0';
	if (memcmp(addr, v4_prefix, 12) != 0) {
		inet_ntop(AF_INET6, addr, out, (socklen_t)outlen);
		return;
	}
	if (outlen < sizeof("255.255.255.255")) {
		inet_ntop(AF_INET, addr + 12, out, (socklen_t)outlen);
		return;
	}
	for (int i = 12; i < 16; i++) {
		unsigned v = addr[i];

		if (v >= 100)
			*out++ = (char)('0' + v / 100);
		if (v >= 10)
			*out++ = (char)('0' + v / 10 % 10);
		*out++ = (char)('0' + v % 10);
		*out++ = i < 15 ? '.' : '\0';
	}
}

static bool str_eq(const struct http1_str *s, const char *lit)
{
	size_t n = strlen(lit);

	return s->len == n && memcmp(s->p, lit, n) == 0;
}

static bool method_is_known(const struct http1_str *m)
{
	static const char *const known[] = {"GET",     "HEAD",	  "POST",  "PUT",  "DELETE",
					    "CONNECT", "OPTIONS", "TRACE", "PATCH"};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (str_eq(m, known[i]))
			return true;
	return false;
}

/* Split a Host header value into host and port (port 0 when absent or invalid); a userinfo
 * ("Host: user:pass@host" is invalid, and a password) is never exported. */
static void split_host(const struct http1_str *host, struct http1_str *name, int *port)
{
	name->p = NULL;
	name->len = 0;
	*port = 0;
	if (!host->len)
		return; /* no Host header (HTTP/1.0): p is NULL */
	authority_split(host->p, host->len, &name->p, &name->len, port);
}

/* ---- attributes -------------------------------------------------------------------- */

/* span name "METHOD path"; url.path. The path is the redacted one (no query, userinfo or
 * path parameters: they carry secrets). Asterisk-form (OPTIONS *), authority-form (CONNECT
 * host:port) and anything unrecognised have no path: the name is the method alone
 * (semconv: "{method}" when there is no route). */
static void set_name_and_method(struct span *s, const struct http1_head *h,
				const struct target_parts *t, bool tls)
{
	bool known = method_is_known(&h->method);
	bool has_path = t->form == TARGET_ORIGIN || t->form == TARGET_ABSOLUTE;
	struct text_out name = {.buf = s->name, .cap = sizeof(s->name)};

	out_put(&name, known ? h->method.p : "HTTP", known ? h->method.len : 4);
	if (has_path) {
		out_put(&name, " ", 1);
		out_put(&name, t->path, t->path_len > 100 ? 100 : t->path_len);
	}
	if (known) {
		span_set_str(s, "http.request.method", h->method.p, h->method.len);
	} else {
		span_set_str(s, "http.request.method", "_OTHER", 6);
		span_set_str(s, "http.request.method_original", h->method.p,
			     h->method.len > 32 ? 32 : h->method.len);
	}
	if (has_path)
		span_set_str(s, "url.path", t->path, t->path_len);
	span_set_str(s, "url.scheme", tls ? "https" : "http", tls ? 5 : 4);
}

/* exported: false for a span head sampling dropped: only what metrics need is built */
static void set_common_attrs(struct span *s, const struct http1_head *h,
			     const struct target_parts *t, const struct conn_info *ci,
			     bool exported)
{
	char addr[INET6_ADDRSTRLEN];

	set_name_and_method(s, h, t, ci->tls);
	if (!exported)
		return;
	span_set_str(s, "network.protocol.version", h->version_minor ? "1.1" : "1.0", 3);
	if (ci->tuple.family) {
		tuple_addr_string(ci->tuple.raddr, addr, sizeof(addr));
		span_set_str(s, "network.peer.address", addr, strlen(addr));
		span_set_int(s, "network.peer.port", ci->tuple.rport);
	}
	if (h->user_agent.len)
		span_set_str(s, "user_agent.original", h->user_agent.p,
			     h->user_agent.len > 256 ? 256 : h->user_agent.len);
}

/* Server side: server.* describes this server as the client addressed it. */
static void set_server_attrs(struct span *s, const struct http1_head *h,
			     const struct target_parts *t, const struct conn_info *ci, bool exported)
{
	char addr[INET6_ADDRSTRLEN];
	struct http1_str host = {0};
	int port = 0;

	set_common_attrs(s, h, t, ci, exported);
	split_host(&h->host, &host, &port);
	if (host.len) {
		span_set_str(s, "server.address", host.p, host.len > 255 ? 255 : host.len);
	} else if (ci->tuple.family) {
		tuple_addr_string(ci->tuple.laddr, addr, sizeof(addr));
		span_set_str(s, "server.address", addr, strlen(addr));
	}
	if (!port)
		port = ci->tuple.family ? ci->tuple.lport : (ci->tls ? 443 : 80);
	span_set_int(s, "server.port", port);
	if (exported && ci->tuple.family) {
		tuple_addr_string(ci->tuple.raddr, addr, sizeof(addr));
		span_set_str(s, "client.address", addr, strlen(addr));
	}
}

/* url.full of a client request: an absolute-form target (a request to a proxy) names the
 * resource itself, with its own scheme (userinfo gone); otherwise the connection's scheme,
 * the server and the path. Requests with no path (CONNECT, OPTIONS *) have none. */
static void set_url_full(struct span *s, const struct target_parts *t, struct http1_str host,
			 int port, bool tls)
{
	char url[640];
	struct text_out o = {.buf = url, .cap = sizeof(url)};
	const char *scheme = tls ? "https" : "http";
	bool v6;

	if (t->form == TARGET_ABSOLUTE) {
		scheme = t->scheme;
		host.p = t->host;
		host.len = t->host_len;
		port = t->port;
	} else if (t->form != TARGET_ORIGIN) {
		return;
	}
	if (!host.len)
		return;
	/* an IPv6 literal goes in brackets (RFC 3986 3.2.2) */
	v6 = memchr(host.p, ':', host.len) != NULL;
	out_put(&o, scheme, strlen(scheme));
	out_put(&o, "://", 3);
	if (v6)
		out_put(&o, "[", 1);
	out_put(&o, host.p, host.len > 255 ? 255 : host.len);
	if (v6)
		out_put(&o, "]", 1);
	if (port) {
		out_put(&o, ":", 1);
		out_put_uint(&o, (unsigned)port);
	}
	out_put(&o, t->path, t->path_len > 300 ? 300 : t->path_len);
	span_set_str(s, "url.full", url, o.len);
}

/* Client side: server.* is the peer the request went to. */
static void set_client_attrs(struct span *s, const struct http1_head *h,
			     const struct target_parts *t, const struct conn_info *ci, bool exported)
{
	char addr[INET6_ADDRSTRLEN];
	struct http1_str host = {0};
	int port = 0;

	set_common_attrs(s, h, t, ci, exported);
	split_host(&h->host, &host, &port);
	if (!host.len && ci->tuple.family) {
		tuple_addr_string(ci->tuple.raddr, addr, sizeof(addr));
		host.p = addr;
		host.len = strlen(addr);
	}
	if (!port)
		port = ci->tuple.family ? ci->tuple.rport : (ci->tls ? 443 : 80);
	if (host.len)
		span_set_str(s, "server.address", host.p, host.len > 255 ? 255 : host.len);
	span_set_int(s, "server.port", port);
	/* no Host header and no socket: where it went is unknown */
	if (exported)
		set_url_full(s, t, host, port, ci->tls);
}

/* The request-target as spans may show it (see target.h). */
static void split_request_target(const struct exchange_env *env, const struct http1_head *h,
				 struct target_parts *t)
{
	static const struct http1_str connect = {.p = "CONNECT", .len = 7};

	target_split(h->target.p, h->target.len,
		     h->method.len == connect.len && memcmp(h->method.p, connect.p, 7) == 0,
		     env->keep_path_params, t);
}

/* ---- trace context ----------------------------------------------------------------- */

/* The head decision, made as soon as the span's trace id is known: the sampled flag it
 * carries on (and injects) and whether export will want the span. has_parent: the span
 * continues a context whose sampled flag is already in s->trace_flags. Returns the decision:
 * false means build only what metrics and the audit need. */
static bool head_sample(const struct exchange_env *env, struct span *s, bool has_parent)
{
	bool keep;

	if (!env->sampler)
		return true;
	keep = sampler_decide(env->sampler, s->trace_id, has_parent,
			      (s->trace_flags & W3C_FLAG_SAMPLED) != 0);
	s->trace_flags = (uint8_t)((s->trace_flags & ~W3C_FLAG_SAMPLED) |
				   (keep ? W3C_FLAG_SAMPLED : 0));
	s->not_exported = !keep;
	return keep;
}

/* The request's traceparent, when it has exactly one valid header (a duplicate makes both
 * invalid, W3C trace-context 3.2). Its tracestate goes into tracestate[] when valid. */
static bool request_context(const struct http1_head *h, struct trace_context *tc, char *tracestate,
			    size_t tslen)
{
	const char *parts[HTTP1_MAX_TRACESTATE_HDRS];
	size_t lens[HTTP1_MAX_TRACESTATE_HDRS];
	unsigned n = h->tracestate_count;

	tracestate[0] = '\0';
	if (h->traceparent_count != 1 ||
	    traceparent_parse(h->traceparent.p, h->traceparent.len, tc) != TRACEPARENT_VALID)
		return false;
	if (n > HTTP1_MAX_TRACESTATE_HDRS)
		n = HTTP1_MAX_TRACESTATE_HDRS;
	for (unsigned i = 0; i < n; i++) {
		parts[i] = h->tracestate[i].p;
		lens[i] = h->tracestate[i].len;
	}
	if (n && tracestate_normalise(parts, lens, n, tracestate, tslen) < 0)
		STAT_INC(tracestate_invalid);
	return true;
}

/* What a request waiting for its response costs: the exchange and the span it becomes. */
static size_t exchange_cost(void)
{
	return mem_budget__cost(sizeof(struct exchange)) + mem_budget__cost(sizeof(struct span));
}

static struct exchange *exchange_new(struct exchange_env *env, const struct conn_info *ci,
				     const struct http1_head *h, uint32_t tid, uint8_t kind)
{
	struct exchange *ex;
	struct resource *res;

	if (!mem_budget__charge(env->budget, exchange_cost()))
		return NULL;
	ex = calloc(1, sizeof(*ex));
	if (ex)
		ex->span = span_new();
	if (!ex || !ex->span) {
		free(ex);
		mem_budget__release(env->budget, exchange_cost());
		return NULL;
	}
	ex->span->kind = kind;
	ex->span->pid = ci->tgid;
	ex->span->tid = tid;
	/* semconv thread.id: OTLP has no other place for the thread (JSON has "tid") */
	span_set_int(ex->span, "thread.id", tid);
	ex->start_ns = h->start_tag;
	ex->is_head = str_eq(&h->method, "HEAD");
	ex->is_connect = str_eq(&h->method, "CONNECT");
	res = proc_table__resource(env->procs, ci->tgid, ci->proc_start_ns, ci->comm);
	if (res)
		ex->span->resource = resource_get(res);
	return ex;
}

static const char *service_of(const struct span *s)
{
	return s->resource && s->resource->service_name ? s->resource->service_name : "?";
}

void exchange_link_peers(struct exchange_env *env, struct exchange *ex, struct exchange *caller)
{
	struct span *s = ex->span, *cs = caller->span;
	const char *svc = service_of(cs);

	ex->peer_seen = caller->peer_seen = true;
	ex->peer = caller;
	caller->peer = ex;
	/* the server read bytes the client had sent: the client's send event, stamped when
	 * its send returned, may come after the server's read */
	if (caller->start_ns > ex->start_ns)
		caller->start_ns = ex->start_ns;
	span_set_str(s, "hoptrace.caller.service", svc, strlen(svc));
	svc = service_of(s);
	span_set_str(cs, "hoptrace.callee.service", svc, strlen(svc));
	/* a span that already has children keeps its trace: rewriting it would orphan them */
	if (ex->in_valid || !env->stitch || ex->has_children)
		return;
	memcpy(s->trace_id, cs->trace_id, 16);
	memcpy(s->parent_span_id, cs->span_id, 8);
	s->trace_flags = cs->trace_flags;
	correlate__trace_changed(env->corr, &ex->inflight);
	span_set_str(s, "hoptrace.repair", "stitched", 8);
	STAT_INC(spans_stitched);
}

/* What the thread waits in now; waiting for many descriptors marks it an event loop. */
static enum thread_wait sample_wait(struct exchange_env *env, uint32_t tgid, uint32_t tid)
{
	enum thread_wait w = thread_wait_sample(env->proc_root, tgid, tid);

	STAT_INC(thread_wait_samples);
	if (w == THREAD_WAIT_MANY)
		correlate__thread_waits_many(env->corr, tid);
	return w;
}

struct exchange *exchange_start_server(struct exchange_env *env, const struct conn_info *ci,
				       const struct http1_head *h, const struct record_ctx *rec)
{
	struct exchange *ex = exchange_new(env, ci, h, rec->tid, SPAN_KIND_SERVER);
	struct target_parts target;
	struct trace_context in;
	struct span *s;

	if (!ex)
		return NULL;
	s = ex->span;
	if (request_context(h, &in, s->tracestate, sizeof(s->tracestate))) {
		/* join the caller's trace as a child of its span */
		STAT_INC(traceparent_valid);
		memcpy(s->trace_id, in.trace_id, 16);
		memcpy(s->parent_span_id, in.parent_id, 8);
		s->trace_flags = in.flags & 0x03;
		ex->in_valid = true;
		ex->in_tracestate = s->tracestate[0] != '\0';
	} else {
		if (h->traceparent_count)
			STAT_INC(traceparent_invalid);
		span_random_id(s->trace_id, 16);
		s->trace_flags = W3C_FLAG_SAMPLED;
	}
	span_random_id(s->span_id, 8);
	if (rec->ids) {
		/* --repair=inject: BPF chose these ids and injects them into this request's calls
		 */
		if (!ex->in_valid || memcmp(s->trace_id, rec->ids->trace_id, 16) != 0)
			memset(s->parent_span_id, 0, 8);
		memcpy(s->trace_id, rec->ids->trace_id, 16);
		memcpy(s->span_id, rec->ids->span_id, 8);
	}
	if (head_sample(env, s, ex->in_valid))
		span_set_str(s, "hoptrace.traceparent.received",
			     ex->in_valid ? "valid" : (h->traceparent_count ? "invalid" : "none"),
			     ex->in_valid ? 5 : (h->traceparent_count ? 7 : 4));
	split_request_target(env, h, &target);
	set_server_attrs(s, h, &target, ci, !s->not_exported);
	ex->inflight.tgid = ci->tgid;
	ex->inflight.tid = rec->tid;
	ex->inflight.conn = ci->cookie;
	ex->inflight.nonblocking = (rec->flags & HT_DATA_NONBLOCK) != 0;
	ex->inflight.start_ns = ex->start_ns;
	ex->inflight.span = s;
	/* without registration the request still becomes a span, only without children */
	if (correlate__add(env->corr, &ex->inflight))
		STAT_INC(drop_correlate_full);
	/* an event loop is idle in epoll when its request is read: mark it at once */
	if (correlate__wait_matters(env->corr, rec->tid))
		sample_wait(env, ci->tgid, rec->tid);
	return ex;
}

static struct exchange *exchange_of(const struct inflight *in)
{
	return (struct exchange *)((char *)in - offsetof(struct exchange, inflight));
}

static enum propagation_result classify_for(const struct exchange *sx, const struct http1_head *h,
					    const struct trace_context *out, bool has_out,
					    bool *ts_dropped)
{
	struct audit_input in = {
	    .served_valid = sx->in_valid,
	    .served_trace_id = sx->span->trace_id,
	    .served_parent_id = sx->span->parent_span_id,
	    .served_tracestate = sx->in_tracestate,
	    .sent_count = h->traceparent_count,
	    .sent_valid = has_out,
	    .sent = out,
	    .sent_tracestate = h->tracestate_count > 0,
	};

	return audit_classify(&in, ts_dropped);
}

static void set_unclassified(struct span *s, const char *why)
{
	span_set_str(s, "hoptrace.propagation.unclassified", why, strlen(why));
}

/* Audit the call: did the service pass on the context of the request it serves? Only a
 * request known by sound evidence is the one served: the parent, or, when the call carries
 * another trace's header (so that trace-id matching found nothing), the request its thread
 * serves by the same rules. Any other call is not classified, and says why. */
static void audit_call(struct exchange_env *env, struct span *s, const struct call_query *q,
		       const struct http1_head *h, const struct trace_context *out, bool has_out,
		       const struct parent_match *m)
{
	const struct parent_match *pm = m;
	struct parent_match by_thread;
	struct call_query thread_q = *q;
	enum propagation_result r;
	bool ts_dropped = false;
	const char *name;

	if (!m->parent && has_out && m->reason == REASON_TRACE_NOT_IN_FLIGHT) {
		thread_q.out_trace_id = NULL;
		correlate__find_parent(env->corr, &thread_q, &by_thread);
		pm = &by_thread;
	}
	if (!pm->parent) {
		set_unclassified(s, parent_reason_name(pm->reason) ? parent_reason_name(pm->reason)
								   : "no_request_in_flight");
		return;
	}
	r = classify_for(exchange_of(pm->parent), h, out, has_out, &ts_dropped);
	if (r == PROP_NONE) {
		set_unclassified(s, "request_without_context");
		return;
	}
	name = propagation_result_name(r);
	span_set_str(s, "hoptrace.propagation", name, strlen(name));
	name = parent_confidence_name(pm->conf);
	span_set_str(s, "hoptrace.propagation.confidence", name, strlen(name));
	if (ts_dropped)
		span_set_str(s, "hoptrace.propagation.tracestate", "dropped", 7);
}

static void count_parent(enum parent_confidence conf)
{
	switch (conf) {
	case PARENT_EXACT:
		STAT_INC(parent_exact);
		break;
	case PARENT_THREAD:
		STAT_INC(parent_thread);
		break;
	case PARENT_ANCESTOR:
		STAT_INC(parent_ancestor);
		break;
	case PARENT_AMBIGUOUS:
		STAT_INC(parent_ambiguous);
		break;
	default:
		STAT_INC(parent_none);
	}
}

/* The application sent its own traceparent: the client span takes its trace id and uses
 * its parent-id as span id, so the downstream server span (whose parent is that id) links
 * to it. Exception: a header forwarded unchanged from the incoming request carries the
 * upstream span's id, which must not be reused. */
static void ids_from_outgoing(struct span *s, const struct trace_context *out,
			      const struct parent_match *m)
{
	memcpy(s->trace_id, out->trace_id, 16);
	s->trace_flags = out->flags & 0x03;
	if (m->parent && memcmp(out->parent_id, m->parent->span->parent_span_id, 8) == 0)
		span_random_id(s->span_id, 8);
	else
		memcpy(s->span_id, out->parent_id, 8);
	if (m->parent)
		memcpy(s->parent_span_id, m->parent->span->span_id, 8);
}

static void ids_from_parent(struct span *s, const struct span *parent)
{
	memcpy(s->trace_id, parent->trace_id, 16);
	memcpy(s->parent_span_id, parent->span_id, 8);
	s->trace_flags = parent->trace_flags;
	if (!s->tracestate[0])
		memcpy(s->tracestate, parent->tracestate, sizeof(s->tracestate));
	span_random_id(s->span_id, 8);
}

/* Several requests in flight of which one surely is the parent (pipelined on one blocking
 * thread, or several of the call's trace): each is linked as a possible parent. Requests
 * of an event loop are not: the call may belong to none of them (a timer). */
static void link_candidates(struct span *s, const struct parent_match *m)
{
	if (m->reason != REASON_SEVERAL && m->reason != REASON_SEVERAL_OF_TRACE)
		return;
	for (unsigned i = 0; i < m->ncandidates; i++)
		span_add_link(s, m->candidates[i]->span->trace_id, m->candidates[i]->span->span_id,
			      "ambiguous_parent");
}

/* The parent was taken: the request records it (stitching must not move it to another
 * trace now), and adoption by thread or ancestry is counted against its bound. */
static void take_parent(const struct parent_match *m)
{
	struct exchange *px;

	if (!m->parent)
		return;
	px = exchange_of(m->parent);
	px->has_children = true;
	if (m->conf == PARENT_THREAD || m->conf == PARENT_ANCESTOR)
		px->inflight.adopted++;
}

struct exchange *exchange_start_client(struct exchange_env *env, const struct conn_info *ci,
				       const struct http1_head *h, const struct record_ctx *rec)
{
	struct exchange *ex = exchange_new(env, ci, h, rec->tid, SPAN_KIND_CLIENT);
	struct call_query q = {.tgid = ci->tgid, .tid = rec->tid, .ts_ns = rec->ts_ns};
	struct target_parts target;
	const char *reason;
	struct parent_match m;
	struct trace_context out;
	bool has_out, injected;
	struct span *s;

	if (!ex)
		return NULL;
	s = ex->span;
	has_out = request_context(h, &out, s->tracestate, sizeof(s->tracestate));
	injected = !has_out && rec->ids;
	q.out_trace_id = has_out ? out.trace_id : injected ? rec->ids->trace_id : NULL;
	/* a thread on non-blocking sockets serves this request only if it now waits for this
	 * call alone */
	if (correlate__wait_matters(env->corr, rec->tid))
		q.waits_one_fd = sample_wait(env, ci->tgid, rec->tid) == THREAD_WAIT_ONE_FD;
	correlate__find_parent(env->corr, &q, &m);
	count_parent(m.conf);
	take_parent(&m);
	if (injected) {
		/* --repair=inject: exactly the ids the request left with */
		memcpy(s->trace_id, rec->ids->trace_id, 16);
		memcpy(s->span_id, rec->ids->span_id, 8);
		memcpy(s->parent_span_id, rec->ids->parent_id, 8);
		s->trace_flags = rec->ids->flags & 0x03;
	} else if (has_out) {
		ids_from_outgoing(s, &out, &m);
	} else if (m.parent) {
		ids_from_parent(s, m.parent->span);
	} else {
		span_random_id(s->trace_id, 16);
		span_random_id(s->span_id, 8);
		s->trace_flags = W3C_FLAG_SAMPLED;
		link_candidates(s, &m);
	}
	/* a context came with the call (the application's header, ours, or a parent span) */
	if (!head_sample(env, s,
			 has_out || m.parent ||
			     (injected && memcmp(rec->ids->parent_id, "\0\0\0\0\0\0\0\0", 8))))
		goto audit;
	span_set_str(s, "hoptrace.parent.confidence", parent_confidence_name(m.conf),
		     strlen(parent_confidence_name(m.conf)));
	reason = parent_reason_name(m.reason);
	if (reason)
		span_set_str(s, "hoptrace.parent.reason", reason, strlen(reason));
	span_set_str(s, "hoptrace.traceparent.sent",
		     has_out	? "valid"
		     : injected ? "injected"
				: (h->traceparent_count ? "invalid" : "none"),
		     has_out	? 5
		     : injected ? 8
				: (h->traceparent_count ? 7 : 4));
audit:
	audit_call(env, s, &q, h, &out, has_out, &m);
	split_request_target(env, h, &target);
	set_client_attrs(s, h, &target, ci, !s->not_exported);
	return ex;
}

void exchange_answered(struct exchange_env *env, struct exchange *ex, uint16_t status,
		       const struct record_ctx *rec)
{
	ex->status = status;
	if (ex->span->kind == SPAN_KIND_SERVER)
		correlate__answered(env->corr, &ex->inflight, rec->tid);
}

static void set_outcome(struct span *s, uint16_t status, const char *error)
{
	char code[8];
	bool failed;

	if (status)
		span_set_int(s, "http.response.status_code", status);
	if (error) {
		s->status = SPAN_STATUS_ERROR;
		snprintf(s->status_message, sizeof(s->status_message), "%s", error);
		span_set_str(s, "error.type", "incomplete", 10);
		return;
	}
	/* semconv: 5xx is an error for servers, 4xx and 5xx for clients */
	failed = status >= 500 || (s->kind == SPAN_KIND_CLIENT && status >= 400);
	if (failed) {
		s->status = SPAN_STATUS_ERROR;
		snprintf(code, sizeof(code), "%u", status);
		span_set_str(s, "error.type", code, strlen(code));
	}
}

void exchange_finish(struct exchange_env *env, struct exchange *ex, uint64_t end_ns,
		     const char *error)
{
	struct span *s;

	if (!ex)
		return;
	s = ex->span;
	correlate__remove(env->corr, &ex->inflight);
	if (ex->end_cap_ns && end_ns > ex->end_cap_ns)
		end_ns = ex->end_cap_ns;
	if (end_ns < ex->start_ns)
		end_ns = ex->start_ns;
	if (ex->peer) {
		if (!error && s->kind == SPAN_KIND_CLIENT)
			ex->peer->end_cap_ns = end_ns;
		ex->peer->peer = NULL;
	}
	s->start_unix_ns = (uint64_t)((int64_t)ex->start_ns + env->mono_to_unix_ns);
	s->end_unix_ns = (uint64_t)((int64_t)end_ns + env->mono_to_unix_ns);
	set_outcome(s, ex->status, error);
	if (s->kind == SPAN_KIND_SERVER)
		STAT_INC(spans_server);
	else
		STAT_INC(spans_client);
	ex->span = NULL;
	free(ex);
	/* the span is the sink's now, under the sink's own bound (its queue) */
	mem_budget__release(env->budget, exchange_cost());
	env->sink->emit(env->sink, s);
}

void exchange_discard(struct exchange_env *env, struct exchange *ex)
{
	if (ex->peer)
		ex->peer->peer = NULL;
	correlate__remove(env->corr, &ex->inflight);
	span_free(ex->span);
	free(ex);
	mem_budget__release(env->budget, exchange_cost());
}
