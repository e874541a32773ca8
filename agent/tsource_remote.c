// SPDX-License-Identifier: BSD-2-Clause
/*
 * jaeger:URL and tempo:URL (see tsource_remote.h). One blocking libcurl handle: these are
 * offline commands, not the agent's event loop. Every response is bounded (OTLP_DOC_MAX_LEN
 * bytes, counted as it arrives, the transfer stopped past it) and so is their total; messages
 * show the URL without userinfo, query or fragment, and never a response body.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "tsource_otlp.h"
#include "tsource_remote.h"

struct remote {
	struct tconv c;
	CURL *easy;
	struct curl_slist *headers;
	const char *base; /* the API's base URL, no trailing '/' */
	size_t base_len;
	char safe[512]; /* "jaeger:" + the base URL as safe to show */
	struct tbuf body;
	uint64_t total; /* bytes of all responses so far */
	char errbuf[CURL_ERROR_SIZE];
	struct json_doc doc;
	struct u64map seen; /* trace ids (folded to 64 bits) handed over */
	uint64_t dropped;
	size_t limit;	 /* traces at most */
	long timeout_ms; /* of one request */
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct remote *r = ud;
	size_t n = size * nmemb;

	if (r->total + n > TSOURCE_REMOTE_MAX_TOTAL)
		return 0;
	tbuf_put(&r->body, p, n);
	if (r->body.full)
		return 0; /* past the response's bound: the transfer stops here */
	r->total += n;
	return n;
}

static int remote_init(struct remote *r, const char *prog, const char *kind, const char *base,
		       const struct tsource_opts *opts, span_line_fn fn, void *ctx,
		       struct tsource_stats *st)
{
	char url[400], hdr[4200];
	const char *token = getenv(TSOURCE_TOKEN_ENV);
	const char *timeout = getenv(TSOURCE_TIMEOUT_ENV);

	memset(r, 0, sizeof(*r));
	r->c = (struct tconv){.prog = prog, .where = r->safe, .fn = fn, .ctx = ctx, .st = st};
	r->base = base;
	/* a query or fragment of the base URL would end up before the API's path: not used */
	r->base_len = strcspn(base, "?#");
	while (r->base_len && base[r->base_len - 1] == '/')
		r->base_len--;
	text_url_for_log(url, sizeof(url), base);
	snprintf(r->safe, sizeof(r->safe), "%s:%s", kind, url);
	r->body.max = OTLP_DOC_MAX_LEN;
	r->limit = opts->limit ? opts->limit : TSOURCE_REMOTE_DEFAULT_LIMIT;
	json_doc__init(&r->doc);
	r->timeout_ms = TSOURCE_REMOTE_TIMEOUT_MS;
	if (timeout && *timeout) {
		char *end;
		long sec = strtol(timeout, &end, 10);

		if (*end || sec < 1 || sec > 3600) {
			fprintf(stderr, "%s: %s must be seconds from 1 to 3600\n", prog,
				TSOURCE_TIMEOUT_ENV);
			return -EINVAL;
		}
		r->timeout_ms = sec * 1000;
	}
	if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0) {
		fprintf(stderr, "%s: %s: not an http:// or https:// URL\n", prog, r->safe);
		return -EINVAL;
	}
	if (u64map_init(&r->seen, r->limit))
		return -ENOMEM;
	r->easy = curl_easy_init();
	if (!r->easy)
		return -ENOMEM;
	r->headers = curl_slist_append(NULL, "Accept: application/json");
	if (token && *token && strlen(token) < 4096) {
		snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", token);
		r->headers = curl_slist_append(r->headers, hdr);
		explicit_bzero(hdr, sizeof(hdr));
	}
	return r->headers ? 0 : -ENOMEM;
}

static void remote_free(struct remote *r)
{
	for (struct curl_slist *h = r->headers; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(r->headers);
	if (r->easy)
		curl_easy_cleanup(r->easy);
	tbuf_free(&r->body);
	json_doc__free(&r->doc);
	u64map_free(&r->seen);
	tconv_free(&r->c);
	if (r->dropped)
		fprintf(stderr, "%s: %s: %" PRIu64 " tag(s), attribute(s) or link(s) left out\n",
			r->c.prog, r->safe, r->dropped);
}

/*
 * GET base + path_query and parse the answer into r->doc. Returns 0, -ENOENT on HTTP 404,
 * -EFBIG for an answer past OTLP_DOC_MAX_LEN, -EIO on any other failure (said on stderr,
 * naming the path without its query).
 */
static int remote_get(struct remote *r, const char *path_query)
{
	char url[8192], shown[200];
	long code = 0;
	CURLcode rc;

	snprintf(shown, sizeof(shown), "%.*s", (int)strcspn(path_query, "?"), path_query);
	if ((size_t)snprintf(url, sizeof(url), "%.*s%s", (int)r->base_len, r->base, path_query) >=
	    sizeof(url)) {
		fprintf(stderr, "%s: %s: URL too long\n", r->c.prog, r->safe);
		return -EIO;
	}
	r->body.len = 0;
	r->body.full = false;
	r->errbuf[0] = '\0';
	curl_easy_reset(r->easy);
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "hoptrace/" HOPTRACE_VERSION);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)TSOURCE_REMOTE_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, r->timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->easy, CURLOPT_ACCEPT_ENCODING, "");
	rc = curl_easy_perform(r->easy);
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_WRITE_ERROR && r->body.full) {
		fprintf(stderr, "%s: %s: GET %s: response larger than %u MiB: refused\n", r->c.prog,
			r->safe, shown, OTLP_DOC_MAX_LEN >> 20);
		return -EFBIG;
	}
	if (rc == CURLE_WRITE_ERROR) {
		fprintf(stderr, "%s: %s: GET %s: responses past %llu MiB in all: stopped\n",
			r->c.prog, r->safe, shown, TSOURCE_REMOTE_MAX_TOTAL >> 20);
		return -EIO;
	}
	if (rc != CURLE_OK) {
		char why[CURL_ERROR_SIZE * TEXT_ESC_MAX_PER_BYTE + 1];
		const char *e = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);

		/* libcurl's message may quote the URL: only ever the host and port in it */
		text_escape_terminal(why, sizeof(why), e, strlen(e), 0);
		fprintf(stderr, "%s: %s: GET %s: %s\n", r->c.prog, r->safe, shown, why);
		return -EIO;
	}
	if (code == 404)
		return -ENOENT;
	if (code != 200) {
		fprintf(stderr, "%s: %s: GET %s: HTTP %ld%s\n", r->c.prog, r->safe, shown, code,
			code == 401 || code == 403 ? " (set " TSOURCE_TOKEN_ENV
						     " to a bearer token the API accepts)"
						   : "");
		return -EIO;
	}
	if (json_doc__parse_max(&r->doc, r->body.data ? r->body.data : "", r->body.len,
				OTLP_DOC_MAX_LEN, OTLP_DOC_MAX_VALUES)) {
		fprintf(stderr, "%s: %s: GET %s: the answer is not JSON (%s at byte %zu)\n",
			r->c.prog, r->safe, shown, r->doc.err, r->doc.err_off + 1);
		return -EIO;
	}
	return 0;
}

/* A query parameter value, percent-encoded, appended to q (cap bytes). */
static void put_param(struct remote *r, char *q, size_t cap, const char *name, const char *value)
{
	char *esc = curl_easy_escape(r->easy, value, 0);
	size_t used = strlen(q);

	if (esc)
		snprintf(q + used, cap - used, "%s%s=%s", strchr(q, '?') ? "&" : "?", name, esc);
	curl_free(esc);
}

static uint64_t fold_id(const uint8_t id[16])
{
	uint64_t hi, lo;

	memcpy(&hi, id, 8);
	memcpy(&lo, id + 8, 8);
	return (hi ^ lo) ? hi ^ lo : 1;
}

/* Whether the trace is new (then it is remembered); false too when seen is full. */
static bool trace_is_new(struct u64map *seen, size_t max, const uint8_t id[16])
{
	uint64_t k = fold_id(id);

	if (u64map_get(seen, k) || (max && seen->count >= max))
		return false;
	return u64map_put(seen, k, (void *)1) == 0;
}

/* ---- Jaeger --------------------------------------------------------------------------- */

/* A Jaeger tag's value: JSON types by the tag's "type" (string, bool, int64, float64,
 * binary). */
static bool put_tag(struct tline *l, const struct json_doc *d, const struct json_value *tag,
		    bool as_string)
{
	const struct json_value *key = json_doc__member(d, tag, "key");
	const struct json_value *v = json_doc__member(d, tag, "value");
	int64_t i;

	if (!key || key->type != JSON_STRING || !v)
		return false;
	switch (v->type) {
	case JSON_STRING:
		tline_str(l, key->str, key->len, v->str, v->len);
		return true;
	case JSON_TRUE:
	case JSON_FALSE:
		if (as_string)
			tline_str(l, key->str, key->len, v->type == JSON_TRUE ? "true" : "false",
				  v->type == JSON_TRUE ? 4 : 5);
		else
			tline_bool(l, key->str, key->len, v->type == JSON_TRUE);
		return true;
	case JSON_NUMBER:
		if (!as_string && json_value_int(v, &i))
			tline_int(l, key->str, key->len, i);
		else
			tline_str(l, key->str, key->len, v->str, v->len); /* float64, as written */
		return true;
	}
	return false;
}

/* Tags Jaeger uses to carry OTLP's own fields: they become the span's kind and status. */
struct jaeger_special {
	const char *kind;
	bool error;
	const struct json_value *status_code, *status_msg, *tracestate;
};

static bool tag_is(const struct json_value *key, const char *name)
{
	return key && key->type == JSON_STRING && strcmp(key->str, name) == 0 &&
	       key->len == strlen(name);
}

static const char *jaeger_kind(const char *v)
{
	static const char *const map[][2] = {{"server", "SERVER"},
					     {"client", "CLIENT"},
					     {"producer", "PRODUCER"},
					     {"consumer", "CONSUMER"},
					     {"internal", "INTERNAL"}};

	for (size_t i = 0; v && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(v, map[i][0]) == 0)
			return map[i][1];
	return "UNSPECIFIED";
}

/* The special tags of a span; true when tag is one (then it is not an attribute). */
static bool jaeger_special_tag(const struct json_doc *d, const struct json_value *tag,
			       struct jaeger_special *sp)
{
	const struct json_value *key = json_doc__member(d, tag, "key");
	const struct json_value *v = json_doc__member(d, tag, "value");

	if (tag_is(key, "span.kind")) {
		sp->kind = jaeger_kind(json_value_cstr(v));
	} else if (tag_is(key, "error")) {
		sp->error = v && (v->type == JSON_TRUE ||
				  (v->type == JSON_STRING && strcmp(v->str, "true") == 0));
	} else if (tag_is(key, "otel.status_code")) {
		sp->status_code = v;
	} else if (tag_is(key, "otel.status_description")) {
		sp->status_msg = v;
	} else if (tag_is(key, "w3c.tracestate")) {
		sp->tracestate = v;
	} else {
		return false;
	}
	return true;
}

static const struct json_value *jaeger_process(const struct json_doc *d,
					       const struct json_value *trace,
					       const struct json_value *span)
{
	const struct json_value *pid = json_doc__member(d, span, "processID");
	const struct json_value *procs = json_doc__member(d, trace, "processes");
	const struct json_value *p = json_doc__member(d, span, "process"); /* inline form */

	if (p && p->type == JSON_OBJECT)
		return p;
	if (!json_value_cstr(pid))
		return NULL;
	p = json_doc__member(d, procs, pid->str);
	return p && p->type == JSON_OBJECT ? p : NULL;
}

/* A span's parent (the first CHILD_OF reference in its trace) and its other references as
 * links. */
static const char *jaeger_refs(struct tline *l, const struct json_doc *d,
			       const struct json_value *span, struct tspan *s, bool links,
			       uint64_t *dropped)
{
	const struct json_value *refs = json_doc__member(d, span, "references");
	bool parent = false;

	if (refs && refs->type != JSON_ARRAY)
		return "a span whose references are not an array";
	for (const struct json_value *r = json_doc__first(d, refs); r; r = json_doc__next(d, r)) {
		const struct json_value *type = json_doc__member(d, r, "refType");
		const struct json_value *tid = json_doc__member(d, r, "traceID");
		const struct json_value *sid = json_doc__member(d, r, "spanID");
		uint8_t trace[16], sp[8];
		bool child;

		if (!json_value_cstr(tid) || !json_value_cstr(sid) ||
		    !tconv_parse_id(tid->str, tid->len, trace, 16, true) ||
		    !tconv_parse_id(sid->str, sid->len, sp, 8, true)) {
			*dropped += links;
			continue;
		}
		child = json_value_cstr(type) && strcmp(type->str, "CHILD_OF") == 0;
		if (!links && child && !parent && memcmp(trace, s->trace_id, 16) == 0) {
			memcpy(s->parent_span_id, sp, 8);
			parent = true;
		} else if (links && !(child && memcmp(sp, s->parent_span_id, 8) == 0)) {
			tline_link(l, trace, sp, child ? "child_of" : "follows_from");
		}
	}
	return NULL;
}

static const char *jaeger_times(const struct json_doc *d, const struct json_value *span,
				struct tspan *s)
{
	const struct json_value *start = json_doc__member(d, span, "startTime");
	const struct json_value *dur = json_doc__member(d, span, "duration");
	int64_t us, dus;

	if (!json_value_int(start, &us) || us < 0 || (uint64_t)us > UINT64_MAX / 1000)
		return "a span without a startTime in microseconds";
	if (!json_value_int(dur, &dus) || dus < 0 || (uint64_t)dus > UINT64_MAX / 1000)
		return "a span without a duration in microseconds";
	s->start_ns = (uint64_t)us * 1000;
	if ((uint64_t)dus * 1000 > UINT64_MAX - s->start_ns)
		return "a span that ends after the year 2554";
	s->end_ns = s->start_ns + (uint64_t)dus * 1000;
	return NULL;
}

static void jaeger_status(struct tspan *s, const struct jaeger_special *sp)
{
	const char *code = json_value_cstr(sp->status_code);

	s->status = "UNSET";
	if (code && strcmp(code, "OK") == 0)
		s->status = "OK";
	if (sp->error || (code && strcmp(code, "ERROR") == 0))
		s->status = "ERROR";
	if (json_value_cstr(sp->status_msg)) {
		s->status_message = sp->status_msg->str;
		s->status_message_len = sp->status_msg->len;
	}
	if (json_value_cstr(sp->tracestate)) {
		s->tracestate = sp->tracestate->str;
		s->tracestate_len = sp->tracestate->len;
	}
}

static const char *jaeger_span(struct tconv *c, const struct json_doc *d,
			       const struct json_value *trace, const struct json_value *span,
			       uint64_t *dropped)
{
	const struct json_value *tid = json_doc__member(d, span, "traceID");
	const struct json_value *sid = json_doc__member(d, span, "spanID");
	const struct json_value *name = json_doc__member(d, span, "operationName");
	const struct json_value *tags = json_doc__member(d, span, "tags");
	const struct json_value *flags = json_doc__member(d, span, "flags");
	const struct json_value *proc = jaeger_process(d, trace, span), *svc, *ptags;
	struct jaeger_special sp = {.kind = "UNSPECIFIED"};
	struct tspan s = {0};
	int64_t f = 1;
	const char *why;

	if (!json_value_cstr(tid) || !tconv_parse_id(tid->str, tid->len, s.trace_id, 16, true))
		return "a span without a valid traceID";
	if (!json_value_cstr(sid) || !tconv_parse_id(sid->str, sid->len, s.span_id, 8, true))
		return "a span without a valid spanID";
	if (name && name->type != JSON_STRING)
		return "a span whose operationName is not a string";
	if (tags && tags->type != JSON_ARRAY)
		return "a span whose tags are not an array";
	if (flags && (!json_value_int(flags, &f) || f < 0))
		return "a span whose flags are not an integer";
	why = jaeger_refs(NULL, d, span, &s, false, dropped);
	if (!why)
		why = jaeger_times(d, span, &s);
	if (why)
		return why;
	for (const struct json_value *t = json_doc__first(d, tags); t; t = json_doc__next(d, t))
		jaeger_special_tag(d, t, &sp);
	svc = json_doc__member(d, proc, "serviceName");
	s.name = name ? name->str : "";
	s.name_len = name ? name->len : 0;
	s.kind = sp.kind;
	s.trace_flags = (uint32_t)(f & 0xff);
	s.service = json_value_cstr(svc);
	s.service_len = s.service ? svc->len : 0;
	jaeger_status(&s, &sp);
	tline_begin(&c->line, &s);
	for (const struct json_value *t = json_doc__first(d, tags); t; t = json_doc__next(d, t)) {
		struct jaeger_special ignored = {0};

		if (!jaeger_special_tag(d, t, &ignored) && !put_tag(&c->line, d, t, false))
			(*dropped)++;
	}
	tline_links(&c->line);
	jaeger_refs(&c->line, d, span, &s, true, dropped);
	tline_resource(&c->line);
	ptags = json_doc__member(d, proc, "tags");
	for (const struct json_value *t = json_doc__first(d, ptags); t; t = json_doc__next(d, t))
		if (!put_tag(&c->line, d, t, true))
			(*dropped)++;
	*dropped += c->line.dropped;
	c->line.dropped = 0;
	tconv_emit(c);
	return NULL;
}

int tsource_jaeger_doc(struct tconv *c, const struct json_doc *d, const struct json_value *root,
		       struct u64map *seen, size_t max_traces, uint64_t *dropped)
{
	const struct json_value *data = json_doc__member(d, root, "data");

	if (!data || data->type != JSON_ARRAY) {
		tconv_malformed(c, "no \"data\" array (not a Jaeger API answer): skipped");
		return c->stop;
	}
	for (const struct json_value *t = json_doc__first(d, data); t && !c->stop;
	     t = json_doc__next(d, t)) {
		const struct json_value *tid = json_doc__member(d, t, "traceID");
		const struct json_value *spans = json_doc__member(d, t, "spans");
		uint8_t id[16];

		if (!json_value_cstr(tid) || !tconv_parse_id(tid->str, tid->len, id, 16, true) ||
		    !spans || spans->type != JSON_ARRAY) {
			tconv_malformed(c, "a trace without a valid traceID or spans: skipped");
			continue;
		}
		if (!trace_is_new(seen, max_traces, id))
			continue;
		for (const struct json_value *sp = json_doc__first(d, spans); sp && !c->stop;
		     sp = json_doc__next(d, sp)) {
			const char *why = sp->type == JSON_OBJECT
					      ? jaeger_span(c, d, t, sp, dropped)
					      : "a span that is not an object";

			c->st->lines++;
			if (why)
				tconv_malformed(c, "%s: skipped", why);
		}
	}
	return c->stop;
}

/* The time range of opts in the API's unit (1000: microseconds, 1e9: seconds). */
static void put_range(struct remote *r, char *q, size_t cap, const struct tsource_opts *opts,
		      uint64_t ns_per_unit)
{
	char num[32];

	if (opts->from_unix_ns || opts->to_unix_ns) {
		snprintf(num, sizeof(num), "%" PRIu64, opts->from_unix_ns / ns_per_unit);
		put_param(r, q, cap, "start", num);
		snprintf(num, sizeof(num), "%" PRIu64,
			 opts->to_unix_ns ? (opts->to_unix_ns + ns_per_unit - 1) / ns_per_unit
					  : UINT64_MAX / ns_per_unit);
		put_param(r, q, cap, "end", num);
	}
}

static int jaeger_service(struct remote *r, const char *service, const struct tsource_opts *opts)
{
	size_t limit = r->limit;
	char q[4096], num[24];
	int err;

	/* an answer past the size bound is asked for again with half the traces */
	do {
		snprintf(q, sizeof(q), "/api/traces");
		put_param(r, q, sizeof(q), "service", service);
		put_range(r, q, sizeof(q), opts, 1000);
		snprintf(num, sizeof(num), "%zu", limit);
		put_param(r, q, sizeof(q), "limit", num);
		err = remote_get(r, q);
		limit /= 2;
	} while (err == -EFBIG && limit);
	if (err == -ENOENT) /* a service without traces in the range (some versions) */
		return 0;
	if (!err)
		tsource_jaeger_doc(&r->c, &r->doc, json_doc__root(&r->doc), &r->seen, r->limit,
				   &r->dropped);
	return err == -EFBIG ? -EIO : err;
}

int tsource_jaeger_read(const char *prog, const char *rest, const struct tsource_opts *opts,
			span_line_fn fn, void *ctx, struct tsource_stats *stats)
{
	const struct json_value *data;
	struct remote r;
	char **services = NULL;
	size_t n = 0;
	int err;

	err = remote_init(&r, prog, "jaeger", rest, opts, fn, ctx, stats);
	if (!err && !opts->service) {
		err = remote_get(&r, "/api/services");
		data = err ? NULL : json_doc__member(&r.doc, json_doc__root(&r.doc), "data");
		if (!err && (!data || data->type != JSON_ARRAY)) {
			fprintf(stderr, "%s: %s: /api/services: no \"data\" array\n", prog, r.safe);
			err = -EIO;
		}
		/* the names outlive the document: each query below parses into it */
		services = err ? NULL : calloc(data->count + 1, sizeof(*services));
		for (const struct json_value *s = json_doc__first(&r.doc, data); services && s;
		     s = json_doc__next(&r.doc, s))
			if (json_value_cstr(s) && (services[n] = strdup(s->str)))
				n++;
		if (!err && !services)
			err = -ENOMEM;
	}
	if (!err && opts->service)
		err = jaeger_service(&r, opts->service, opts);
	if (n > TSOURCE_REMOTE_MAX_SERVICES) {
		fprintf(stderr, "%s: %s: %zu services: the first %u read\n", prog, r.safe, n,
			TSOURCE_REMOTE_MAX_SERVICES);
		while (n > TSOURCE_REMOTE_MAX_SERVICES)
			free(services[--n]);
	}
	for (size_t i = 0; !err && i < n && !r.c.stop && r.seen.count < r.limit; i++)
		err = jaeger_service(&r, services[i], opts);
	for (size_t i = 0; i < n; i++)
		free(services[i]);
	free(services);
	remote_free(&r);
	return err ? err : r.c.stop;
}

/* ---- Tempo ---------------------------------------------------------------------------- */

/* tags=service.name="S" in logfmt (Tempo's search tags), quotes and backslashes escaped */
static void tempo_service_tag(char *out, size_t cap, const char *service)
{
	size_t o = (size_t)snprintf(out, cap, "service.name=\"");

	for (const char *p = service; *p && o + 3 < cap; p++) {
		if (*p == '"' || *p == '\\')
			out[o++] = '\\';
		out[o++] = *p;
	}
	if (o + 2 > cap)
		o = cap - 2;
	out[o++] = '"';
	out[o] = '\0';
}

/* The trace ids of a search answer ({"traces":[{"traceID":"hex"}, ...]}), 32 hex each. */
static char (*tempo_ids(struct remote *r, size_t *n))[33]
{
	const struct json_value *traces =
	    json_doc__member(&r->doc, json_doc__root(&r->doc), "traces");
	char(*ids)[33];

	*n = 0;
	if (!traces || traces->type != JSON_ARRAY) {
		fprintf(stderr, "%s: %s: /api/search: no \"traces\" array\n", r->c.prog, r->safe);
		return NULL;
	}
	ids = calloc(traces->count + 1, sizeof(*ids));
	for (const struct json_value *t = json_doc__first(&r->doc, traces); ids && t;
	     t = json_doc__next(&r->doc, t)) {
		const struct json_value *tid = json_doc__member(&r->doc, t, "traceID");
		uint8_t id[16];

		if (!json_value_cstr(tid) || !tconv_parse_id(tid->str, tid->len, id, 16, true)) {
			tconv_malformed(&r->c, "a search result without a valid traceID: skipped");
			continue;
		}
		for (int i = 0; i < 16; i++)
			snprintf(ids[*n] + 2 * i, 3, "%02x", id[i]);
		(*n)++;
	}
	return ids;
}

int tsource_tempo_read(const char *prog, const char *rest, const struct tsource_opts *opts,
		       span_line_fn fn, void *ctx, struct tsource_stats *stats)
{
	char q[4096] = "/api/search", num[24], tag[1100];
	char(*ids)[33] = NULL;
	struct remote r;
	size_t n = 0;
	int err;

	err = remote_init(&r, prog, "tempo", rest, opts, fn, ctx, stats);
	if (!err) {
		if (opts->service) {
			tempo_service_tag(tag, sizeof(tag), opts->service);
			put_param(&r, q, sizeof(q), "tags", tag);
		}
		put_range(&r, q, sizeof(q), opts, 1000000000ull);
		snprintf(num, sizeof(num), "%zu", r.limit);
		put_param(&r, q, sizeof(q), "limit", num);
		err = remote_get(&r, q);
	}
	if (!err) {
		ids = tempo_ids(&r, &n);
		if (!ids)
			err = -EIO;
	}
	for (size_t i = 0; !err && i < n && !r.c.stop; i++) {
		uint8_t id[16];

		tconv_parse_id(ids[i], 32, id, 16, false);
		if (!trace_is_new(&r.seen, r.limit, id))
			continue;
		snprintf(q, sizeof(q), "/api/traces/%s", ids[i]);
		err = remote_get(&r, q);
		if (err == -ENOENT) { /* gone since the search (retention): counted, not fatal */
			tconv_malformed(&r.c, "trace %s: not found (HTTP 404): skipped", ids[i]);
			err = 0;
			continue;
		}
		if (err == -EFBIG) { /* one huge trace: said above, the others still read */
			r.c.st->malformed++;
			err = 0;
			continue;
		}
		if (!err) {
			tsource_otlp_doc(&r.c, &r.doc, json_doc__root(&r.doc), &r.dropped);
		}
	}
	free(ids);
	remote_free(&r);
	return err ? err : r.c.stop;
}
