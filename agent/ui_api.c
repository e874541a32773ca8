// SPDX-License-Identifier: BSD-2-Clause
/*
 * The web UI's files and its Jaeger-compatible query API (ui_api.h), on the HTTP thread.
 * Every parameter comes from a client: each is checked, and a bad one is a 400 with the
 * reason (Jaeger's {"errors": [{code, msg}]}), never a guess.
 */
#include "ui_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "analyze.h"
#include "audit.h"
#include "jaeger_json.h"
#include "json_read.h"
#include "store.h"
#include "ui_assets.h"

#define JSON_TYPE "application/json"
#define NS_PER_US 1000ULL
#define NS_PER_MS 1000000ULL
#define DEFAULT_LOOKBACK_NS (24ULL * 3600 * 1000000000ULL) /* Jaeger's default for search */

static uint64_t now_unix_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- set-up ---------------------------------------------------------------------------- */

static bool addr_is_loopback(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
	if (a->ss_family == AF_INET6) {
		const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(x) ||
		       (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
	}
	return false;
}

int ui_api_init(struct ui_api *a, const char *path, struct store *st,
		const struct sockaddr_storage *bound)
{
	*a = (struct ui_api){.st = st, .loopback = bound && addr_is_loopback(bound)};
	if (st)
		store_set_time_limit(st, UI_API_QUERY_MS);
	if (!st) {
		a->store_path = strdup(path ? path : STORE_DEFAULT_PATH);
		if (!a->store_path)
			return -ENOMEM;
	}
	return 0;
}

void ui_api_free(struct ui_api *a)
{
	if (a->own_store)
		store_close(a->st);
	free(a->store_path);
	*a = (struct ui_api){0};
}

/* The store, opened read-only when first needed (the agent's writer creates the file; a
 * request before that gets 503 and the next one tries again). */
static struct store *api_store(struct ui_api *a, char *why, size_t cap)
{
	if (!a->st && a->store_path) {
		a->st = store_open(a->store_path, STORE_READ_ONLY, why, cap);
		a->own_store = a->st != NULL;
		if (a->st)
			store_set_time_limit(a->st, UI_API_QUERY_MS);
	}
	return a->st;
}

/* ---- replies --------------------------------------------------------------------------- */

static void reply_buf(struct httpd_reply *r, unsigned status, const char *type, struct jbuf *b)
{
	r->status = status;
	r->content_type = type;
	r->body = b->p ? b->p : "";
	r->len = b->len;
	r->owned = b->p != NULL;
	b->p = NULL; /* the endpoint frees it */
}

/* Jaeger's structured error: {"data":null,...,"errors":[{"code":N,"msg":"..."}]} */
static void reply_error(struct ui_api *a, struct httpd_reply *r, unsigned status, const char *msg)
{
	struct jbuf b;

	a->errors++;
	jbuf_init(&b, 4096);
	jbuf_printf(&b,
		    "{\"data\":null,\"total\":0,\"limit\":0,\"offset\":0,\"errors\":[{\"code\":%u,"
		    "\"msg\":",
		    status);
	jbuf_cstr(&b, msg);
	jbuf_puts(&b, "}]}");
	if (b.err) {
		jbuf_free(&b);
		return; /* no body: the endpoint answers 500 */
	}
	reply_buf(r, status, JSON_TYPE, &b);
}

/* The answer in b ({"data": ... already written}) closed with Jaeger's other fields. */
static void reply_data(struct ui_api *a, struct httpd_reply *r, struct jbuf *b, unsigned long total,
		       unsigned limit)
{
	jbuf_printf(b, ",\"total\":%lu,\"limit\":%u,\"offset\":0,\"errors\":null}", total, limit);
	if (b->err == -E2BIG) {
		jbuf_free(b);
		reply_error(a, r, 413, "the answer is too large: ask for fewer traces (limit)");
		return;
	}
	if (b->err) {
		jbuf_free(b);
		reply_error(a, r, 500, "out of memory");
		return;
	}
	reply_buf(r, 200, JSON_TYPE, b);
}

static void reply_store_error(struct ui_api *a, struct httpd_reply *r, int err)
{
	char msg[160];

	if (err == -ETIMEDOUT)
		snprintf(msg, sizeof(msg),
			 "the search took longer than %u ms: narrow it (a service, an operation, "
			 "a time range)",
			 UI_API_QUERY_MS);
	else
		snprintf(msg, sizeof(msg), "the store cannot be read: %s", store_strerror(err));
	reply_error(a, r, 503, msg);
}

/* ---- /api/services, /api/services/{s}/operations, /api/operations ----------------------- */

struct list_ctx {
	struct jbuf *b;
	unsigned long n;
	const char *kind; /* /api/operations?spanKind= (lowercase), NULL: any */
	bool objects;	  /* [{name, spanKind}] rather than [name] */
	char last[512];	  /* names come sorted by kind; a name listed once */
};

static int list_service(void *ctx, const char *service)
{
	struct list_ctx *l = ctx;

	jbuf_puts(l->b, l->n++ ? "," : "");
	jbuf_cstr(l->b, service);
	return l->b->err;
}

static int list_operation(void *ctx, const char *name, const char *kind)
{
	struct list_ctx *l = ctx;
	const char *k = jaeger_kind_tag(kind);

	if (!k)
		k = "";
	if (l->kind && *l->kind && strcmp(l->kind, k))
		return 0;
	if (!l->objects) {
		/* the same name as a server and a client span: listed once */
		if (!strcmp(l->last, name))
			return 0;
		snprintf(l->last, sizeof(l->last), "%s", name);
		jbuf_puts(l->b, l->n++ ? "," : "");
		jbuf_cstr(l->b, name);
		return l->b->err;
	}
	jbuf_puts(l->b, l->n++ ? ",{\"name\":" : "{\"name\":");
	jbuf_cstr(l->b, name);
	jbuf_puts(l->b, ",\"spanKind\":");
	jbuf_cstr(l->b, k);
	jbuf_puts(l->b, "}");
	return l->b->err;
}

static void api_services(struct ui_api *a, struct store *st, struct httpd_reply *r)
{
	struct jbuf b;
	struct list_ctx l = {.b = &b};
	int err;

	jbuf_init(&b, UI_API_MAX_REPLY);
	jbuf_puts(&b, "{\"data\":[");
	err = store_services(st, list_service, &l);
	if (err < 0 && !b.err) {
		jbuf_free(&b);
		reply_store_error(a, r, err);
		return;
	}
	jbuf_puts(&b, "]");
	reply_data(a, r, &b, l.n, 0);
}

static void api_operations(struct ui_api *a, struct store *st, struct httpd_reply *r,
			   const char *service, const char *kind, bool objects)
{
	struct jbuf b;
	struct list_ctx l = {.b = &b, .kind = kind, .objects = objects};
	int err;

	if (!service || !*service) {
		reply_error(a, r, 400, "parameter 'service' is required");
		return;
	}
	if (kind && *kind && strcmp(kind, "server") && strcmp(kind, "client") &&
	    strcmp(kind, "producer") && strcmp(kind, "consumer") && strcmp(kind, "internal")) {
		reply_error(a, r, 400, "unsupported spanKind");
		return;
	}
	jbuf_init(&b, UI_API_MAX_REPLY);
	jbuf_puts(&b, "{\"data\":[");
	err = store_operations(st, service, list_operation, &l);
	if (err < 0 && !b.err) {
		jbuf_free(&b);
		reply_store_error(a, r, err);
		return;
	}
	jbuf_puts(&b, "]");
	reply_data(a, r, &b, l.n, 0);
}

/* ---- /api/traces ---------------------------------------------------------------------- */

/* A trace's span lines, collected for jaeger_trace_json. */
struct lines {
	char **line;
	size_t *len;
	size_t n, cap;
	bool truncated;
};

static void lines_clear(struct lines *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		free(ls->line[i]);
	ls->n = 0;
	ls->truncated = false;
}

static void lines_free(struct lines *ls)
{
	lines_clear(ls);
	free(ls->line);
	free(ls->len);
	*ls = (struct lines){0};
}

static int collect_line(void *ctx, const char *line, size_t len)
{
	struct lines *ls = ctx;
	char *copy;

	if (ls->n == UI_API_MAX_SPANS) {
		ls->truncated = true;
		return 0; /* the rest of the trace is left out */
	}
	if (ls->n == ls->cap) {
		size_t cap = ls->cap ? ls->cap * 2 : 64;
		char **l = realloc(ls->line, cap * sizeof(*l));
		size_t *n;

		if (!l)
			return -ENOMEM;
		ls->line = l;
		n = realloc(ls->len, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		ls->len = n;
		ls->cap = cap;
	}
	copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, line, len);
	copy[len] = '\0';
	ls->line[ls->n] = copy;
	ls->len[ls->n++] = len;
	return 0;
}

/* One trace in Jaeger's model appended to b; 0, -ENOENT (gone since), or -errno. */
static int put_trace(struct store *st, const uint8_t id[16], struct lines *ls, struct jbuf *b)
{
	int err;

	lines_clear(ls);
	err = store_trace_lines(st, id, collect_line, ls);
	if (err)
		return err < 0 ? err : -EIO;
	return jaeger_trace_json(b, (const char *const *)ls->line, ls->len, ls->n, NULL);
}

static int parse_hex_id(const char *s, uint8_t id[16])
{
	char hex[33];
	size_t n = s ? strlen(s) : 0, i;

	/* Jaeger accepts ids without their leading zeros */
	if (n == 0 || n > 32)
		return -EINVAL;
	memset(hex, '0', 32 - n);
	memcpy(hex + 32 - n, s, n);
	for (i = 0; i < 32; i++) {
		char c = hex[i];
		int v = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;

		if (v < 0)
			return -EINVAL;
		if (i % 2 == 0)
			id[i / 2] = (uint8_t)(v << 4);
		else
			id[i / 2] |= (uint8_t)v;
	}
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s || strlen(s) > 19)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/* A lookback as the Jaeger UI sends it: a duration ("1h", "2d": days too), or "custom". */
static int parse_lookback(const char *s, uint64_t *ns)
{
	size_t n = strlen(s);
	uint64_t days;
	char num[24];

	if (n >= 2 && n < sizeof(num) && s[n - 1] == 'd') {
		memcpy(num, s, n - 1);
		num[n - 1] = '\0';
		if (parse_u64(num, &days) || days > 3650)
			return -EINVAL;
		*ns = days * 24 * 3600 * 1000000000ULL;
		return 0;
	}
	return jaeger_parse_duration(s, ns);
}

/* The tags parameter: a JSON object of string values, as the Jaeger UI sends it. error=true
 * and error=false are the span's status (hoptrace keeps no "error" attribute). The strings
 * stay in doc, which must outlive f. */
static const char *parse_tags(const char *tags, struct json_doc *doc, struct store_filter *f)
{
	const struct json_value *root, *v;

	if (json_doc__parse(doc, tags, strlen(tags)))
		return "malformed 'tags': not a JSON object";
	root = json_doc__root(doc);
	if (root->type != JSON_OBJECT)
		return "malformed 'tags': not a JSON object";
	for (v = json_doc__first(doc, root); v; v = json_doc__next(doc, v)) {
		const char *val = json_value_cstr(v);

		if (!val || strlen(v->key) != v->key_len)
			return "malformed 'tags': values must be strings";
		if (!strcmp(v->key, "error")) {
			if (strcmp(val, "true") && strcmp(val, "false"))
				return "tag 'error' is true or false";
			f->error = !strcmp(val, "true");
			continue;
		}
		if (f->nattrs == STORE_MAX_ATTR_FILTERS)
			return "too many tags (at most 8)";
		f->attr_key[f->nattrs] = v->key;
		f->attr_value[f->nattrs++] = val;
	}
	return NULL;
}

/* The search parameters into f; NULL, or why they are wrong. */
static const char *search_filter(const struct httpd_request *rq, struct json_doc *doc,
				 struct store_filter *f, unsigned *limit)
{
	const char *v;
	uint64_t n, lookback = DEFAULT_LOOKBACK_NS, now = now_unix_ns();

	*f = (struct store_filter){.error = -1};
	v = httpd_request_arg(rq, "service");
	f->service = v && *v ? v : NULL;
	v = httpd_request_arg(rq, "operation");
	/* Grafana and older UIs send "all" for no operation */
	f->operation = v && *v && strcmp(v, "all") && strcmp(v, "All") ? v : NULL;
	if ((v = httpd_request_arg(rq, "minDuration")) && *v &&
	    jaeger_parse_duration(v, &f->min_duration_ns))
		return "malformed 'minDuration' (a duration: 100ms, 1.5s, 250us)";
	if ((v = httpd_request_arg(rq, "maxDuration")) && *v &&
	    jaeger_parse_duration(v, &f->max_duration_ns))
		return "malformed 'maxDuration' (a duration: 100ms, 1.5s, 250us)";
	if (f->min_duration_ns && f->max_duration_ns && f->max_duration_ns < f->min_duration_ns)
		return "'maxDuration' is shorter than 'minDuration'";
	*limit = UI_API_DEFAULT_LIMIT;
	if ((v = httpd_request_arg(rq, "limit")) && *v) {
		if (parse_u64(v, &n))
			return "malformed 'limit'";
		/* bounded: a larger ask gets UI_API_MAX_LIMIT (the answer says which) */
		*limit = n == 0			? UI_API_DEFAULT_LIMIT
			 : n > UI_API_MAX_LIMIT ? UI_API_MAX_LIMIT
						: (unsigned)n;
	}
	f->limit = *limit;
	if ((v = httpd_request_arg(rq, "lookback")) && *v && strcmp(v, "custom") &&
	    parse_lookback(v, &lookback))
		return "malformed 'lookback' (1h, 2d, ...)";
	f->to_unix_ns = now;
	f->from_unix_ns = now > lookback ? now - lookback : 0;
	if ((v = httpd_request_arg(rq, "start")) && *v) {
		if (parse_u64(v, &n) || n > UINT64_MAX / NS_PER_US)
			return "malformed 'start' (microseconds since the epoch)";
		f->from_unix_ns = n * NS_PER_US;
	}
	if ((v = httpd_request_arg(rq, "end")) && *v) {
		if (parse_u64(v, &n) || n > UINT64_MAX / NS_PER_US)
			return "malformed 'end' (microseconds since the epoch)";
		f->to_unix_ns = n * NS_PER_US;
	}
	if ((v = httpd_request_arg(rq, "traceID")) && *v) {
		if (parse_hex_id(v, f->trace_id))
			return "malformed 'traceID'";
		f->has_trace_id = true;
	}
	if ((v = httpd_request_arg(rq, "tags")) && *v)
		return parse_tags(v, doc, f);
	return NULL;
}

static void api_traces(struct ui_api *a, struct store *st, const struct httpd_request *rq,
		       struct httpd_reply *r)
{
	struct store_trace_summary *sums = NULL;
	struct lines ls = {0};
	struct store_filter f;
	struct json_doc doc;
	const char *bad;
	unsigned limit = 0;
	unsigned long written = 0;
	struct jbuf b;
	int n, i, err = 0;

	json_doc__init(&doc);
	bad = search_filter(rq, &doc, &f, &limit);
	if (bad) {
		reply_error(a, r, 400, bad);
		goto out;
	}
	sums = calloc(limit, sizeof(*sums));
	if (!sums) {
		reply_error(a, r, 500, "out of memory");
		goto out;
	}
	n = store_find_traces(st, &f, sums, limit);
	if (n < 0) {
		reply_store_error(a, r, n);
		goto out;
	}
	jbuf_init(&b, UI_API_MAX_REPLY);
	jbuf_puts(&b, "{\"data\":[");
	for (i = 0; i < n && !b.err; i++) {
		size_t mark = b.len;

		if (written)
			jbuf_puts(&b, ",");
		err = put_trace(st, sums[i].trace_id, &ls, &b);
		if (err == -ENOENT) { /* deleted by the store's bounds since the search */
			b.len = mark;
			err = 0;
			continue;
		}
		if (err)
			break;
		written++;
	}
	if (err && !b.err) {
		jbuf_free(&b);
		reply_store_error(a, r, err);
		goto out;
	}
	jbuf_puts(&b, "]");
	reply_data(a, r, &b, written, limit);
out:
	lines_free(&ls);
	free(sums);
	json_doc__free(&doc);
}

static void api_trace(struct ui_api *a, struct store *st, const char *id_text,
		      struct httpd_reply *r)
{
	struct lines ls = {0};
	uint8_t id[16];
	struct jbuf b;
	int err;

	if (parse_hex_id(id_text, id)) {
		reply_error(a, r, 400, "malformed trace id (up to 32 hex digits)");
		return;
	}
	jbuf_init(&b, UI_API_MAX_REPLY);
	jbuf_puts(&b, "{\"data\":[");
	err = put_trace(st, id, &ls, &b);
	lines_free(&ls);
	if (err == -ENOENT) {
		jbuf_free(&b);
		reply_error(a, r, 404, "trace not found");
		return;
	}
	if (err && !b.err) {
		jbuf_free(&b);
		reply_store_error(a, r, err);
		return;
	}
	jbuf_puts(&b, "]");
	reply_data(a, r, &b, 1, 0);
}

/* ---- /api/hoptrace/analyze/{id} ------------------------------------------------------- */

/* `hoptrace analyze --json` of one trace (analyze_trace_json), as the answer's data. */
static void api_analyze(struct ui_api *a, struct store *st, const char *id_text,
			struct httpd_reply *r)
{
	struct lines ls = {0};
	char *doc = NULL;
	size_t doclen = 0;
	uint8_t id[16];
	struct jbuf b;
	FILE *mem;
	int err;

	if (parse_hex_id(id_text, id)) {
		reply_error(a, r, 400, "malformed trace id (up to 32 hex digits)");
		return;
	}
	err = store_trace_lines(st, id, collect_line, &ls);
	if (err == -ENOENT || (!err && !ls.n)) {
		lines_free(&ls);
		reply_error(a, r, 404, "trace not found");
		return;
	}
	if (err) {
		lines_free(&ls);
		reply_store_error(a, r, err < 0 ? err : -EIO);
		return;
	}
	mem = open_memstream(&doc, &doclen);
	err = mem ? analyze_trace_json((const char *const *)ls.line, ls.len, ls.n, NULL, mem)
		  : -ENOMEM;
	if (mem && fclose(mem) && !err)
		err = -EIO;
	lines_free(&ls);
	if (err) {
		free(doc);
		reply_error(a, r, 500, "the trace cannot be analysed");
		return;
	}
	jbuf_init(&b, UI_API_MAX_REPLY);
	jbuf_puts(&b, "{\"data\":");
	while (doclen && (doc[doclen - 1] == '\n' || doc[doclen - 1] == ' '))
		doclen--;
	jbuf_put(&b, doc, doclen);
	free(doc);
	reply_data(a, r, &b, 1, 0);
}

/* ---- /api/dependencies ------------------------------------------------------------------ */

struct deps_ctx {
	struct jbuf *b;
	unsigned long n;
	bool verdicts; /* hoptrace's edges: errors and propagation verdicts too */
};

static int put_edge(void *ctx, const struct store_edge *e)
{
	struct deps_ctx *d = ctx;
	int k;

	jbuf_puts(d->b, d->n++ ? ",{\"parent\":" : "{\"parent\":");
	jbuf_cstr(d->b, e->parent ? e->parent : "");
	jbuf_puts(d->b, ",\"child\":");
	jbuf_cstr(d->b, e->child ? e->child : "");
	jbuf_printf(d->b, ",\"callCount\":%llu", (unsigned long long)e->calls);
	if (d->verdicts) {
		jbuf_printf(d->b, ",\"errorCount\":%llu,\"propagation\":{",
			    (unsigned long long)e->errors);
		for (k = PROP_OK; k < PROP__COUNT; k++)
			jbuf_printf(d->b, "%s\"%s\":%llu", k == PROP_OK ? "" : ",",
				    propagation_result_name((enum propagation_result)k),
				    (unsigned long long)e->by_propagation[k]);
		jbuf_puts(d->b, "}");
	}
	jbuf_puts(d->b, "}");
	return d->b->err;
}

static void api_dependencies(struct ui_api *a, struct store *st, const struct httpd_request *rq,
			     struct httpd_reply *r, bool verdicts)
{
	uint64_t end = now_unix_ns() / NS_PER_MS, lookback = DEFAULT_LOOKBACK_NS / NS_PER_MS;
	struct jbuf b;
	struct deps_ctx d = {.b = &b, .verdicts = verdicts};
	const char *v;
	int err;

	if ((v = httpd_request_arg(rq, "endTs")) && *v &&
	    (parse_u64(v, &end) || end > UINT64_MAX / NS_PER_MS)) {
		reply_error(a, r, 400, "malformed 'endTs' (milliseconds since the epoch)");
		return;
	}
	if ((v = httpd_request_arg(rq, "lookback")) && *v && parse_u64(v, &lookback)) {
		reply_error(a, r, 400, "malformed 'lookback' (milliseconds)");
		return;
	}
	if (lookback > end)
		lookback = end;
	jbuf_init(&b, UI_API_MAX_REPLY);
	jbuf_puts(&b, "{\"data\":[");
	err = store_dependencies(st, (end - lookback) * NS_PER_MS, end * NS_PER_MS, put_edge, &d);
	if (err < 0 && !b.err) {
		jbuf_free(&b);
		reply_store_error(a, r, err);
		return;
	}
	jbuf_puts(&b, "]");
	reply_data(a, r, &b, d.n, 0);
}

/* ---- routing --------------------------------------------------------------------------- */

/* On a loopback address, or from one (an endpoint bound to every address is reached over
 * loopback too), only loopback names may be asked for: a page elsewhere whose name was made
 * to resolve to 127.0.0.1 (DNS rebinding) sends its own name as Host. */
static bool host_allowed(const struct ui_api *a, const char *host, bool client_loopback)
{
	struct in_addr v4;
	char name[256];
	const char *end;
	size_t n;

	if ((!a->loopback && !client_loopback) || !host)
		return true;
	if (host[0] == '[') {
		end = strchr(host, ']');
		if (!end)
			return false;
		n = (size_t)(end - host + 1);
	} else {
		end = strchr(host, ':');
		n = end ? (size_t)(end - host) : strlen(host);
	}
	if (n == 0 || n >= sizeof(name))
		return false;
	memcpy(name, host, n);
	name[n] = '\0';
	if (!strcasecmp(name, "localhost") || !strcmp(name, "[::1]"))
		return true;
	return inet_pton(AF_INET, name, &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

static bool starts(const char *s, const char *prefix, const char **rest)
{
	size_t n = strlen(prefix);

	if (strncmp(s, prefix, n))
		return false;
	*rest = s + n;
	return true;
}

static void route_api(struct ui_api *a, const struct httpd_request *rq, struct httpd_reply *r)
{
	const char *url = rq->url, *rest;
	char why[256] = "", svc[1024];
	struct store *st = api_store(a, why, sizeof(why));
	size_t n;

	if (!st) {
		char msg[320];

		snprintf(msg, sizeof(msg), "no store to read yet: %s", why);
		reply_error(a, r, 503, msg);
		return;
	}
	if (!strcmp(url, "/api/services")) {
		api_services(a, st, r);
	} else if (starts(url, "/api/services/", &rest) && (n = strlen(rest)) > 11 &&
		   !strcmp(rest + n - 11, "/operations")) {
		/* the service name may hold '/' (decoded %2F): everything up to /operations */
		if (n - 11 >= sizeof(svc)) {
			reply_error(a, r, 400, "service name too long");
			return;
		}
		memcpy(svc, rest, n - 11);
		svc[n - 11] = '\0';
		api_operations(a, st, r, svc, NULL, false);
	} else if (!strcmp(url, "/api/operations")) {
		api_operations(a, st, r, httpd_request_arg(rq, "service"),
			       httpd_request_arg(rq, "spanKind"), true);
	} else if (!strcmp(url, "/api/traces")) {
		api_traces(a, st, rq, r);
	} else if (starts(url, "/api/traces/", &rest)) {
		api_trace(a, st, rest, r);
	} else if (!strcmp(url, "/api/dependencies")) {
		api_dependencies(a, st, rq, r, false);
	} else if (!strcmp(url, "/api/hoptrace/dependencies")) {
		api_dependencies(a, st, rq, r, true);
	} else if (starts(url, "/api/hoptrace/analyze/", &rest)) {
		api_analyze(a, st, rest, r);
	} else {
		reply_error(a, r, 404, "no such API path");
	}
}

static void reply_text(struct httpd_reply *r, unsigned status, const char *text)
{
	r->status = status;
	r->content_type = "text/plain; charset=utf-8";
	r->body = text;
	r->len = strlen(text);
	r->owned = false;
}

void ui_api_handle(void *ctx, const struct httpd_request *rq, struct httpd_reply *r)
{
	struct ui_api *a = ctx;
	const struct ui_asset *asset;
	const char *rest;

	a->requests++;
	r->html = true; /* every answer gets the page headers: a JSON body is no page either */
	if (!host_allowed(a, rq->host, rq->client_loopback)) {
		a->errors++;
		reply_text(r, 403,
			   "forbidden: this endpoint answers loopback names only "
			   "(Host: localhost or 127.0.0.1)\n");
		return;
	}
	if (starts(rq->url, "/api/", &rest)) {
		route_api(a, rq, r);
		return;
	}
	asset = ui_asset_find(rq->url);
	if (!asset) {
		reply_text(r, 404, "not found\n");
		return;
	}
	r->status = 200;
	r->content_type = asset->content_type;
	r->body = (const char *)asset->data;
	r->len = asset->len;
	r->owned = false;
}
