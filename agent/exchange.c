// SPDX-License-Identifier: BSD-2-Clause
#include "exchange.h"
#include "logcap.h"

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
#include "route.h"
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

/* ---- the pending record's text ----------------------------------------------------- */

/* Each piece is kept cut where the span would cut it, so the span built at the end is the
 * one the head would have given at once. */
#define KEEP_METHOD_MAX 32	/* http.request.method_original */
#define KEEP_HOST_MAX 255	/* server.address, url.full's host */
#define KEEP_USER_AGENT_MAX 256 /* user_agent.original */
#define KEEP_TRACESTATE_MAX 512 /* W3C: what a span propagates */

/* Text gathered on the stack while a request is looked at, then copied with its record into
 * one allocation of exactly the size used. Larger than the sum of the caps above. */
struct text_room {
	char buf[KEEP_METHOD_MAX + TARGET_PATH_MAX + 16 + 2 * KEEP_HOST_MAX + KEEP_USER_AGENT_MAX +
		 KEEP_TRACESTATE_MAX];
	uint16_t used;
};

static struct text_ref keep_text(struct text_room *r, const char *p, size_t len, size_t cap)
{
	struct text_ref ref = {.off = r->used};

	if (len > cap)
		len = cap;
	if (len > sizeof(r->buf) - r->used) /* cannot happen: the room holds every cap */
		len = sizeof(r->buf) - r->used;
	if (len)
		memcpy(r->buf + r->used, p, len);
	r->used = (uint16_t)(r->used + len);
	ref.len = (uint16_t)len;
	return ref;
}

static const char *text_of(const struct exchange *ex, struct text_ref r)
{
	return ex->strs + r.off;
}

/* ---- attributes (set only when the exchange finishes) ------------------------------ */

/* span name "METHOD path"; url.path. The path is the redacted one (no query, userinfo or
 * path parameters: they carry secrets). Asterisk-form (OPTIONS *), authority-form (CONNECT
 * host:port) and anything unrecognised have no path: the name is the method alone
 * (semconv: "{method}" when there is no route). */
static void set_name_and_method(struct span *s, const struct exchange *ex)
{
	const char *method = text_of(ex, ex->method), *path = text_of(ex, ex->path);
	bool has_path = ex->target_form == TARGET_ORIGIN || ex->target_form == TARGET_ABSOLUTE;
	struct text_out name = {.buf = s->name, .cap = sizeof(s->name)};

	out_put(&name, ex->method_known ? method : "HTTP", ex->method_known ? ex->method.len : 4);
	if (has_path) {
		out_put(&name, " ", 1);
		out_put(&name, path, ex->path.len > 100 ? 100 : ex->path.len);
	}
	if (ex->method_known) {
		span_set_str(s, "http.request.method", method, ex->method.len);
	} else {
		span_set_str(s, "http.request.method", "_OTHER", 6);
		span_set_str(s, "http.request.method_original", method, ex->method.len);
	}
	if (has_path)
		span_set_str(s, "url.path", path, ex->path.len);
	span_set_str(s, "url.scheme", ex->tls ? "https" : "http", ex->tls ? 5 : 4);
}

static void set_common_attrs(struct span *s, const struct exchange *ex)
{
	char addr[INET6_ADDRSTRLEN];

	set_name_and_method(s, ex);
	if (ex->not_exported) /* head sampling dropped it: only what metrics need */
		return;
	span_set_str(s, "network.protocol.version", ex->version_minor ? "1.1" : "1.0", 3);
	if (ex->tuple.family) {
		tuple_addr_string(ex->tuple.raddr, addr, sizeof(addr));
		span_set_str(s, "network.peer.address", addr, strlen(addr));
		span_set_int(s, "network.peer.port", ex->tuple.rport);
	}
	if (ex->user_agent.len)
		span_set_str(s, "user_agent.original", text_of(ex, ex->user_agent),
			     ex->user_agent.len);
}

/* Server side: server.* describes this server as the client addressed it. */
static void set_server_attrs(struct span *s, const struct exchange *ex)
{
	char addr[INET6_ADDRSTRLEN];
	int port = ex->host_port;

	set_common_attrs(s, ex);
	if (ex->host.len) {
		span_set_str(s, "server.address", text_of(ex, ex->host), ex->host.len);
	} else if (ex->tuple.family) {
		tuple_addr_string(ex->tuple.laddr, addr, sizeof(addr));
		span_set_str(s, "server.address", addr, strlen(addr));
	}
	if (!port)
		port = ex->tuple.family ? ex->tuple.lport : (ex->tls ? 443 : 80);
	span_set_int(s, "server.port", port);
	if (ex->tuple.family) {
		tuple_addr_string(ex->tuple.raddr, addr, sizeof(addr));
		span_set_str(s, "client.address", addr, strlen(addr));
	}
}

/* url.full of a client request: an absolute-form target (a request to a proxy) names the
 * resource itself, with its own scheme (userinfo gone); otherwise the connection's scheme,
 * the server and the path. Requests with no path (CONNECT, OPTIONS *) have none. */
static void set_url_full(struct span *s, const struct exchange *ex, struct http1_str host, bool v6,
			 int port)
{
	char url[640];
	struct text_out o = {.buf = url, .cap = sizeof(url)};
	const char *scheme = ex->tls ? "https" : "http";
	size_t scheme_len = ex->tls ? 5 : 4;

	if (ex->target_form == TARGET_ABSOLUTE) {
		scheme = text_of(ex, ex->target_scheme);
		scheme_len = ex->target_scheme.len;
		host.p = text_of(ex, ex->target_host);
		host.len = ex->target_host.len;
		v6 = ex->target_host_v6;
		port = ex->target_port;
	} else if (ex->target_form != TARGET_ORIGIN) {
		return;
	}
	if (!host.len)
		return;
	/* an IPv6 literal goes in brackets (RFC 3986 3.2.2) */
	out_put(&o, scheme, scheme_len);
	out_put(&o, "://", 3);
	if (v6)
		out_put(&o, "[", 1);
	out_put(&o, host.p, host.len);
	if (v6)
		out_put(&o, "]", 1);
	if (port) {
		out_put(&o, ":", 1);
		out_put_uint(&o, (unsigned)port);
	}
	out_put(&o, text_of(ex, ex->path), ex->path.len > 300 ? 300 : ex->path.len);
	span_set_str(s, "url.full", url, o.len);
}

/* Client side: server.* is the peer the request went to. */
static void set_client_attrs(struct span *s, const struct exchange *ex)
{
	char addr[INET6_ADDRSTRLEN];
	struct http1_str host = {.p = text_of(ex, ex->host), .len = ex->host.len};
	bool v6 = ex->host_v6;
	int port = ex->host_port;

	set_common_attrs(s, ex);
	if (!host.len && ex->tuple.family) {
		tuple_addr_string(ex->tuple.raddr, addr, sizeof(addr));
		host.p = addr;
		host.len = strlen(addr);
		v6 = memchr(addr, ':', host.len) != NULL;
	}
	if (!port)
		port = ex->tuple.family ? ex->tuple.rport : (ex->tls ? 443 : 80);
	if (host.len)
		span_set_str(s, "server.address", host.p, host.len);
	span_set_int(s, "server.port", port);
	/* no Host header and no socket: where it went is unknown */
	if (!ex->not_exported)
		set_url_full(s, ex, host, v6, port);
}

/* The request's place in its trace as decided when it was seen: for a server, what came
 * in; for a client, its parent and the audit of what it passed on. */
static void set_context_attrs(struct span *s, const struct exchange *ex)
{
	const char *name;

	if (ex->kind == SPAN_KIND_SERVER) {
		span_set_str(s, "hoptrace.traceparent.received", ex->traceparent_seen,
			     strlen(ex->traceparent_seen));
		return;
	}
	name = parent_confidence_name(ex->parent_conf);
	span_set_str(s, "hoptrace.parent.confidence", name, strlen(name));
	name = parent_reason_name(ex->parent_reason);
	if (name)
		span_set_str(s, "hoptrace.parent.reason", name, strlen(name));
	span_set_str(s, "hoptrace.traceparent.sent", ex->traceparent_seen,
		     strlen(ex->traceparent_seen));
	if (ex->unclassified) {
		span_set_str(s, "hoptrace.propagation.unclassified", ex->unclassified,
			     strlen(ex->unclassified));
		return;
	}
	name = propagation_result_name(ex->propagation);
	span_set_str(s, "hoptrace.propagation", name, strlen(name));
	name = parent_confidence_name(ex->propagation_conf);
	span_set_str(s, "hoptrace.propagation.confidence", name, strlen(name));
	if (ex->tracestate_dropped)
		span_set_str(s, "hoptrace.propagation.tracestate", "dropped", 7);
}

static const char *service_of(const struct resource *r)
{
	return r && r->service_name ? r->service_name : "?";
}

/*
 * The route (route.h) of a request with a path: http.route on a server span, url.template
 * on a client's (semconv: http.route is the server's matched route; a client knows only
 * the template of the URL it called), and the span name becomes "METHOD route" in place of
 * "METHOD path" (semconv: "{method} {http.route}", "{method} {url.template}"). Past the
 * service's cap the route is ROUTE_OVERFLOW, counted. Resolved when the span is built, so
 * a pending request holds no route.
 */
static void set_route(const struct exchange_env *env, struct span *s, const struct exchange *ex)
{
	bool client = ex->kind == SPAN_KIND_CLIENT;
	char route[ROUTE_MAX + 1];
	struct text_out name;
	const char *space;
	size_t n;

	if (!env->routes ||
	    (ex->target_form != TARGET_ORIGIN && ex->target_form != TARGET_ABSOLUTE))
		return;
	switch (route_table__resolve(env->routes, service_of(s->resource), client,
				     text_of(ex, ex->path), ex->path.len, route, sizeof(route))) {
	case ROUTE_NEW:
		STAT_INC(routes_learned);
		break;
	case ROUTE_OVER_CAP:
		STAT_INC(routes_overflow);
		break;
	case ROUTE_TABLE_FULL:
		STAT_INC(routes_table_full);
		break;
	case ROUTE_KNOWN:
		break;
	}
	n = strlen(route);
	span_set_str(s, client ? "url.template" : "http.route", route, n);
	/* the name so far is "METHOD path" (set_name_and_method): keep the method */
	space = strchr(s->name, ' ');
	if (!space)
		return;
	name = (struct text_out){
	    .buf = s->name, .cap = sizeof(s->name), .len = (size_t)(space - s->name) + 1};
	s->name[name.len] = '\0';
	out_put(&name, route, n > 100 ? 100 : n);
}

/* The other end of a same-host hop, and whether stitching joined this span to it. */
static void set_peer_attrs(struct span *s, const struct exchange *ex)
{
	const char *svc = service_of(ex->peer_resource);

	if (!ex->peer_linked)
		return;
	if (ex->kind == SPAN_KIND_SERVER) {
		span_set_str(s, "hoptrace.caller.service", svc, strlen(svc));
		if (ex->stitched)
			span_set_str(s, "hoptrace.repair", "stitched", 8);
	} else {
		span_set_str(s, "hoptrace.callee.service", svc, strlen(svc));
	}
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

/*
 * The span of a finished exchange, ending at end_ns (monotonic): the one place that turns
 * the record into a span and sets its attributes (in the order the exporters have always
 * seen them). The record's resource reference passes to the span. NULL: no memory.
 */
static struct span *span_of_exchange(const struct exchange_env *env, struct exchange *ex,
				     uint64_t end_ns, const char *error)
{
	struct span *s = span_new();

	if (!s)
		return NULL;
	memcpy(s->trace_id, ex->trace_id, 16);
	memcpy(s->span_id, ex->span_id, 8);
	memcpy(s->parent_span_id, ex->parent_span_id, 8);
	s->trace_flags = ex->trace_flags;
	s->not_exported = ex->not_exported;
	s->kind = ex->kind;
	s->pid = ex->pid;
	s->tid = ex->tid;
	s->resource = ex->resource;
	ex->resource = NULL;
	memcpy(s->tracestate, text_of(ex, ex->tracestate), ex->tracestate.len);
	s->tracestate[ex->tracestate.len] = '\0';
	for (unsigned i = 0; i < ex->nlinks; i++)
		span_add_link(s, ex->links[i].trace_id, ex->links[i].span_id, "ambiguous_parent");
	s->start_unix_ns = (uint64_t)((int64_t)ex->start_ns + env->mono_to_unix_ns);
	s->end_unix_ns = (uint64_t)((int64_t)end_ns + env->mono_to_unix_ns);
	/* semconv thread.id: OTLP has no other place for the thread (JSON has "tid") */
	if (!ex->not_exported)
		span_set_int(s, "thread.id", ex->tid);
	set_context_attrs(s, ex); /* the audit reads these, sampled or not */
	if (ex->kind == SPAN_KIND_SERVER)
		set_server_attrs(s, ex);
	else
		set_client_attrs(s, ex);
	set_route(env, s, ex);
	set_peer_attrs(s, ex);
	set_outcome(s, ex->status, error);
	/* log lines: exported spans only (the sampler said no to the others' text) */
	if (!ex->not_exported) {
		s->events = ex->events;
		ex->events = NULL;
	}
	s->dropped_events = ex->dropped_events;
	return s;
}

/* ---- what a request keeps of its head ---------------------------------------------- */

/* The request-target as spans may show it (see target.h). */
static void split_request_target(const struct exchange_env *env, const struct http1_head *h,
				 struct target_parts *t)
{
	static const struct http1_str connect = {.p = "CONNECT", .len = 7};

	target_split(h->target.p, h->target.len,
		     h->method.len == connect.len && memcmp(h->method.p, connect.p, 7) == 0,
		     env->keep_path_params, t);
	/* tokens, hashes and emails in the path may be credentials or people (route.h) */
	t->path_len = route_mask_path(t->path, t->path_len, sizeof(t->path));
}

static bool has_colon(const char *p, size_t len)
{
	return len && memchr(p, ':', len) != NULL;
}

/* Copy what the span needs of the head into the draft record d and its room. */
static void keep_request_text(const struct exchange_env *env, struct exchange *d,
			      struct text_room *room, const struct http1_head *h)
{
	struct target_parts t;
	struct http1_str host = {0};
	int port = 0;

	d->version_minor = h->version_minor;
	d->method_known = method_is_known(&h->method);
	d->method = keep_text(room, h->method.p, h->method.len, KEEP_METHOD_MAX);
	split_request_target(env, h, &t);
	d->target_form = (uint8_t)t.form;
	d->path = keep_text(room, t.path, t.path_len, TARGET_PATH_MAX);
	if (t.form == TARGET_ABSOLUTE) {
		d->target_scheme = keep_text(room, t.scheme, strlen(t.scheme), sizeof(t.scheme));
		d->target_host = keep_text(room, t.host, t.host_len, KEEP_HOST_MAX);
		d->target_host_v6 = has_colon(t.host, t.host_len);
		d->target_port = t.port;
	}
	split_host(&h->host, &host, &port);
	d->host = keep_text(room, host.p, host.len, KEEP_HOST_MAX);
	d->host_v6 = has_colon(host.p, host.len);
	d->host_port = port;
	d->user_agent = keep_text(room, h->user_agent.p, h->user_agent.len, KEEP_USER_AGENT_MAX);
}

/* ---- trace context ----------------------------------------------------------------- */

/* The head decision, made as soon as the request's trace id is known: the sampled flag it
 * carries on (and injects), and whether export will want its span. has_parent: it continues
 * a context whose sampled flag is already in d->trace_flags. */
static void head_sample(const struct exchange_env *env, struct exchange *d, bool has_parent)
{
	bool keep;

	if (!env->sampler)
		return;
	keep = sampler_decide(env->sampler, d->trace_id, has_parent,
			      (d->trace_flags & W3C_FLAG_SAMPLED) != 0);
	d->trace_flags =
	    (uint8_t)((d->trace_flags & ~W3C_FLAG_SAMPLED) | (keep ? W3C_FLAG_SAMPLED : 0));
	d->not_exported = !keep;
}

/* The request's traceparent, when it has exactly one valid header (a duplicate makes both
 * invalid, W3C trace-context 3.2). Its tracestate goes into tracestate[] when valid;
 * *ts_invalid says it was rejected (counted by the caller once the request is kept). */
static bool request_context(const struct http1_head *h, struct trace_context *tc, char *tracestate,
			    size_t tslen, bool *ts_invalid)
{
	const char *parts[HTTP1_MAX_TRACESTATE_HDRS];
	size_t lens[HTTP1_MAX_TRACESTATE_HDRS];
	unsigned n = h->tracestate_count;

	tracestate[0] = '\0';
	*ts_invalid = false;
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
		*ts_invalid = true;
	return true;
}

/* ---- records: drafted on the stack, kept at their own size ------------------------- */

/* What a request waiting for its response costs: its record, text included. */
static size_t exchange_cost(const struct exchange *ex)
{
	return mem_budget__cost(sizeof(*ex) + ex->strs_len);
}

static void draft_init(struct exchange *d, const struct conn_info *ci, const struct http1_head *h,
		       uint32_t tid, uint8_t kind)
{
	memset(d, 0, sizeof(*d));
	d->kind = kind;
	d->pid = ci->tgid;
	d->tid = tid;
	d->tuple = ci->tuple;
	d->tls = ci->tls;
	d->start_ns = h->start_tag;
	d->is_head = str_eq(&h->method, "HEAD");
	d->is_connect = str_eq(&h->method, "CONNECT");
}

/* The draft d with the text in room, kept: charged to the budget and allocated at its size.
 * NULL when the budget refuses it (counted in budget_drops) or on allocation failure. The
 * resource is looked up only for a request kept. */
static struct exchange *exchange_keep(struct exchange_env *env, const struct conn_info *ci,
				      const struct exchange *d, const struct text_room *room)
{
	size_t size = sizeof(*d) + room->used;
	struct exchange *ex;
	struct resource *res;

	if (!mem_budget__charge(env->budget, mem_budget__cost(size)))
		return NULL;
	ex = malloc(size);
	if (!ex) {
		mem_budget__release(env->budget, mem_budget__cost(size));
		return NULL;
	}
	memcpy(ex, d, sizeof(*d));
	memcpy(ex->strs, room->buf, room->used);
	ex->strs_len = room->used;
	res = proc_table__resource(env->procs, ci->tgid, ci->proc_start_ns, ci->comm);
	if (res)
		ex->resource = resource_get(res);
	return ex;
}

static void exchange_free(struct exchange_env *env, struct exchange *ex)
{
	size_t cost = exchange_cost(ex);

	resource_put(ex->resource);
	resource_put(ex->peer_resource);
	free(ex->events);
	free(ex->partial);
	if (ex->logs_charged)
		mem_budget__release(env->budget, LOGCAP_EXCHANGE_COST);
	free(ex);
	mem_budget__release(env->budget, cost);
}

/* ex learns the process at the other end of its same-host hop. */
static void note_peer(struct exchange *ex, struct resource *peer_res)
{
	resource_put(ex->peer_resource);
	ex->peer_resource = peer_res ? resource_get(peer_res) : NULL;
	ex->peer_linked = true;
}

void exchange_link_peers(struct exchange_env *env, struct exchange *ex, struct exchange *caller)
{
	ex->peer_seen = caller->peer_seen = true;
	ex->peer = caller;
	caller->peer = ex;
	/* the server read bytes the client had sent: the client's send event, stamped when
	 * its send returned, may come after the server's read */
	if (caller->start_ns > ex->start_ns)
		caller->start_ns = ex->start_ns;
	note_peer(ex, caller->resource);
	note_peer(caller, ex->resource);
	/* a span that already has children keeps its trace: rewriting it would orphan them */
	if (ex->in_valid || !env->stitch || ex->has_children)
		return;
	memcpy(ex->trace_id, caller->trace_id, 16);
	memcpy(ex->parent_span_id, caller->span_id, 8);
	ex->trace_flags = caller->trace_flags;
	correlate__trace_changed(env->corr, &ex->inflight);
	ex->stitched = true;
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
	char tracestate[KEEP_TRACESTATE_MAX + 1];
	struct text_room room = {.used = 0};
	struct trace_context in;
	struct exchange d, *ex;
	bool ts_invalid;

	draft_init(&d, ci, h, rec->tid, SPAN_KIND_SERVER);
	d.in_valid = request_context(h, &in, tracestate, sizeof(tracestate), &ts_invalid);
	if (d.in_valid) {
		/* join the caller's trace as a child of its span */
		memcpy(d.trace_id, in.trace_id, 16);
		memcpy(d.parent_span_id, in.parent_id, 8);
		d.trace_flags = in.flags & 0x03;
		d.in_tracestate = tracestate[0] != '\0';
	} else {
		span_random_id(d.trace_id, 16);
		d.trace_flags = W3C_FLAG_SAMPLED;
	}
	span_random_id(d.span_id, 8);
	if (rec->ids) {
		/* --repair=inject: BPF chose these ids and injects them into this request's calls
		 */
		if (!d.in_valid || memcmp(d.trace_id, rec->ids->trace_id, 16) != 0)
			memset(d.parent_span_id, 0, 8);
		memcpy(d.trace_id, rec->ids->trace_id, 16);
		memcpy(d.span_id, rec->ids->span_id, 8);
	}
	head_sample(env, &d, d.in_valid);
	d.traceparent_seen = d.in_valid ? "valid" : (h->traceparent_count ? "invalid" : "none");
	d.tracestate = keep_text(&room, tracestate, strlen(tracestate), KEEP_TRACESTATE_MAX);
	keep_request_text(env, &d, &room, h);
	ex = exchange_keep(env, ci, &d, &room);
	if (!ex)
		return NULL;
	if (ex->in_valid)
		STAT_INC(traceparent_valid);
	else if (h->traceparent_count)
		STAT_INC(traceparent_invalid);
	if (ts_invalid)
		STAT_INC(tracestate_invalid);
	ex->inflight.tgid = ci->tgid;
	ex->inflight.tid = rec->tid;
	ex->inflight.conn = ci->cookie;
	ex->inflight.nonblocking = (rec->flags & HT_DATA_NONBLOCK) != 0;
	ex->inflight.start_ns = ex->start_ns;
	ex->inflight.trace_id = ex->trace_id;
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
	    .served_trace_id = sx->trace_id,
	    .served_parent_id = sx->parent_span_id,
	    .served_tracestate = sx->in_tracestate,
	    .sent_count = h->traceparent_count,
	    .sent_valid = has_out,
	    .sent = out,
	    .sent_tracestate = h->tracestate_count > 0,
	};

	return audit_classify(&in, ts_dropped);
}

/* Audit the call (into the draft d): did the service pass on the context of the request it
 * serves? Only a request known by sound evidence is the one served: the parent, or, when
 * the call carries another trace's header (so that trace-id matching found nothing), the
 * request its thread serves by the same rules. Any other call is not classified, and says
 * why. */
static void audit_call(struct exchange_env *env, struct exchange *d, const struct call_query *q,
		       const struct http1_head *h, const struct trace_context *out, bool has_out,
		       const struct parent_match *m)
{
	const struct parent_match *pm = m;
	struct parent_match by_thread;
	struct call_query thread_q = *q;
	enum propagation_result r;
	bool ts_dropped = false;

	if (!m->parent && has_out && m->reason == REASON_TRACE_NOT_IN_FLIGHT) {
		thread_q.out_trace_id = NULL;
		correlate__find_parent(env->corr, &thread_q, &by_thread);
		pm = &by_thread;
	}
	if (!pm->parent) {
		d->unclassified = parent_reason_name(pm->reason) ? parent_reason_name(pm->reason)
								 : "no_request_in_flight";
		return;
	}
	r = classify_for(exchange_of(pm->parent), h, out, has_out, &ts_dropped);
	if (r == PROP_NONE) {
		d->unclassified = AUDIT_REASON_WITHOUT_CONTEXT;
		return;
	}
	d->propagation = (uint8_t)r;
	d->propagation_conf = (uint8_t)pm->conf;
	d->tracestate_dropped = ts_dropped;
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
static void ids_from_outgoing(struct exchange *d, const struct trace_context *out,
			      const struct parent_match *m)
{
	const struct exchange *px = m->parent ? exchange_of(m->parent) : NULL;

	memcpy(d->trace_id, out->trace_id, 16);
	d->trace_flags = out->flags & 0x03;
	if (px && memcmp(out->parent_id, px->parent_span_id, 8) == 0)
		span_random_id(d->span_id, 8);
	else
		memcpy(d->span_id, out->parent_id, 8);
	if (px)
		memcpy(d->parent_span_id, px->span_id, 8);
}

/* A child of the request in flight px; it propagates px's tracestate unless it has its own
 * (tracestate[], NUL-terminated, of size KEEP_TRACESTATE_MAX + 1). */
static void ids_from_parent(struct exchange *d, const struct exchange *px, char *tracestate)
{
	memcpy(d->trace_id, px->trace_id, 16);
	memcpy(d->parent_span_id, px->span_id, 8);
	d->trace_flags = px->trace_flags;
	if (!tracestate[0]) {
		memcpy(tracestate, text_of(px, px->tracestate), px->tracestate.len);
		tracestate[px->tracestate.len] = '\0';
	}
	span_random_id(d->span_id, 8);
}

/* Several requests in flight of which one surely is the parent (pipelined on one blocking
 * thread, or several of the call's trace): each is linked as a possible parent. Requests
 * of an event loop are not: the call may belong to none of them (a timer). */
static void link_candidates(struct exchange *d, const struct parent_match *m)
{
	if (m->reason != REASON_SEVERAL && m->reason != REASON_SEVERAL_OF_TRACE)
		return;
	for (unsigned i = 0; i < m->ncandidates && d->nlinks < EXCHANGE_MAX_LINKS; i++) {
		const struct exchange *cx = exchange_of(m->candidates[i]);

		memcpy(d->links[d->nlinks].trace_id, cx->trace_id, 16);
		memcpy(d->links[d->nlinks].span_id, cx->span_id, 8);
		d->nlinks++;
	}
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
	struct call_query q = {.tgid = ci->tgid, .tid = rec->tid, .ts_ns = rec->ts_ns};
	char tracestate[KEEP_TRACESTATE_MAX + 1];
	struct text_room room = {.used = 0};
	bool has_out, injected, ts_invalid;
	struct trace_context out;
	struct parent_match m;
	struct exchange d, *ex;

	draft_init(&d, ci, h, rec->tid, SPAN_KIND_CLIENT);
	has_out = request_context(h, &out, tracestate, sizeof(tracestate), &ts_invalid);
	injected = !has_out && rec->ids;
	q.out_trace_id = has_out ? out.trace_id : injected ? rec->ids->trace_id : NULL;
	/* a thread on non-blocking sockets serves this request only if it now waits for this
	 * call alone (what it waits in is a fact about the thread, kept even if the budget
	 * refuses the request) */
	if (correlate__wait_matters(env->corr, rec->tid))
		q.waits_one_fd = sample_wait(env, ci->tgid, rec->tid) == THREAD_WAIT_ONE_FD;
	correlate__find_parent(env->corr, &q, &m);
	if (injected) {
		/* --repair=inject: exactly the ids the request left with */
		memcpy(d.trace_id, rec->ids->trace_id, 16);
		memcpy(d.span_id, rec->ids->span_id, 8);
		memcpy(d.parent_span_id, rec->ids->parent_id, 8);
		d.trace_flags = rec->ids->flags & 0x03;
	} else if (has_out) {
		ids_from_outgoing(&d, &out, &m);
	} else if (m.parent) {
		ids_from_parent(&d, exchange_of(m.parent), tracestate);
	} else {
		span_random_id(d.trace_id, 16);
		span_random_id(d.span_id, 8);
		d.trace_flags = W3C_FLAG_SAMPLED;
		link_candidates(&d, &m);
	}
	/* a context came with the call: the application's header, ours, or a parent span */
	head_sample(env, &d,
		    has_out || m.parent ||
			(injected && memcmp(rec->ids->parent_id, "\0\0\0\0\0\0\0\0", 8)));
	d.parent_conf = (uint8_t)m.conf;
	d.parent_reason = (uint8_t)m.reason;
	d.traceparent_seen = has_out	? "valid"
			     : injected ? "injected"
					: (h->traceparent_count ? "invalid" : "none");
	audit_call(env, &d, &q, h, &out, has_out, &m);
	d.tracestate = keep_text(&room, tracestate, strlen(tracestate), KEEP_TRACESTATE_MAX);
	keep_request_text(env, &d, &room, h);
	ex = exchange_keep(env, ci, &d, &room);
	if (!ex)
		return NULL;
	if (ts_invalid)
		STAT_INC(tracestate_invalid);
	count_parent(m.conf);
	take_parent(&m);
	return ex;
}

void exchange_answered(struct exchange_env *env, struct exchange *ex, uint16_t status,
		       const struct record_ctx *rec)
{
	ex->status = status;
	if (ex->kind == SPAN_KIND_SERVER)
		correlate__answered(env->corr, &ex->inflight, rec->tid);
}

void exchange_finish(struct exchange_env *env, struct exchange *ex, uint64_t end_ns,
		     const char *error)
{
	struct span *s;

	if (!ex)
		return;
	correlate__remove(env->corr, &ex->inflight);
	if (ex->end_cap_ns && end_ns > ex->end_cap_ns)
		end_ns = ex->end_cap_ns;
	if (end_ns < ex->start_ns)
		end_ns = ex->start_ns;
	if (ex->peer) {
		if (!error && ex->kind == SPAN_KIND_CLIENT)
			ex->peer->end_cap_ns = end_ns;
		ex->peer->peer = NULL;
	}
	logcap_flush(env, ex); /* a last line written without its newline */
	s = span_of_exchange(env, ex, end_ns, error);
	exchange_free(env, ex);
	if (!s) {
		STAT_INC(drop_span_no_memory);
		return;
	}
	if (s->kind == SPAN_KIND_SERVER)
		STAT_INC(spans_server);
	else
		STAT_INC(spans_client);
	if (s->resource)
		s->resource->spans++;
	/* the span is the sink's now, under the sink's own bound (its queue) */
	env->sink->emit(env->sink, s);
}

void exchange_discard(struct exchange_env *env, struct exchange *ex)
{
	if (ex->peer)
		ex->peer->peer = NULL;
	correlate__remove(env->corr, &ex->inflight);
	exchange_free(env, ex);
}
