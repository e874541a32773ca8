// SPDX-License-Identifier: BSD-2-Clause
/*
 * Span lines into Jaeger's JSON model (jaeger_json.h). Each line is parsed with the strict
 * reader; one that is not a span object of the schema is counted and left out, never
 * guessed at.
 */
#include "jaeger_json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"

/* ---- the output buffer ------------------------------------------------------------------ */

void jbuf_init(struct jbuf *b, size_t max)
{
	*b = (struct jbuf){.max = max};
}

void jbuf_free(struct jbuf *b)
{
	free(b->p);
	*b = (struct jbuf){0};
}

static bool jbuf_room(struct jbuf *b, size_t n)
{
	size_t want;
	char *p;

	if (b->err)
		return false;
	if (n > b->max || b->len > b->max - n) {
		b->err = -E2BIG;
		return false;
	}
	if (b->len + n + 1 <= b->cap)
		return true;
	want = b->cap ? b->cap : 4096;
	while (want < b->len + n + 1)
		want *= 2;
	p = realloc(b->p, want);
	if (!p) {
		b->err = -ENOMEM;
		return false;
	}
	b->p = p;
	b->cap = want;
	return true;
}

void jbuf_put(struct jbuf *b, const char *s, size_t n)
{
	if (!jbuf_room(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void jbuf_puts(struct jbuf *b, const char *s)
{
	jbuf_put(b, s, strlen(s));
}

void jbuf_printf(struct jbuf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->err = b->err ? b->err : -E2BIG; /* only short numeric texts go through here */
		return;
	}
	jbuf_put(b, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len, i;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

void jbuf_str(struct jbuf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	jbuf_put(b, "\"", 1);
	while (i < n && !b->err) {
		unsigned char c = p[i];

		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};

			jbuf_put(b, esc, 2);
			i++;
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f) {
			/* control bytes, and what would mean something in HTML */
			jbuf_printf(b, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			jbuf_put(b, s + i, 1);
			i++;
		} else if ((k = utf8_len(p + i, n - i)) == 0) {
			jbuf_puts(b, "\\ufffd");
			i++;
		} else if (k == 3 && c == 0xe2 && p[i + 1] == 0x80 &&
			   (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
			/* U+2028/9: valid JSON, but line ends in older JavaScript */
			jbuf_printf(b, "\\u%04x", 0x2000u | (p[i + 2] == 0xa8 ? 0x28u : 0x29u));
			i += 3;
		} else {
			jbuf_put(b, s + i, k);
			i += k;
		}
	}
	jbuf_put(b, "\"", 1);
}

void jbuf_cstr(struct jbuf *b, const char *s)
{
	jbuf_str(b, s, strlen(s));
}

/* ---- reading a span line ---------------------------------------------------------------- */

struct span_in {
	const struct json_value *root;
	const char *trace_id, *span_id, *parent, *name, *kind, *status, *status_msg, *service;
	const char *tracestate;
	size_t name_len, service_len, status_msg_len;
	int64_t start_ns, dur_ns, pid, flags, dropped_events;
	const struct json_value *attributes, *links, *events, *resource;
};

static bool is_hex(const char *s, size_t want)
{
	size_t i;

	if (!s)
		return false;
	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == want;
}

static const struct json_value *member(const struct json_doc *d, const struct json_value *o,
				       const char *key, enum json_type type)
{
	const struct json_value *v = json_doc__member(d, o, key);

	return v && v->type == type ? v : NULL;
}

static const char *member_str(const struct json_doc *d, const struct json_value *o, const char *key,
			      size_t *len)
{
	const struct json_value *v = member(d, o, key, JSON_STRING);

	if (len)
		*len = v ? v->len : 0;
	return v ? v->str : NULL;
}

static bool member_int(const struct json_doc *d, const struct json_value *o, const char *key,
		       int64_t *out)
{
	const struct json_value *v = json_doc__member(d, o, key);

	*out = 0;
	return v && json_value_int(v, out);
}

/* The span of one parsed line, false when the line is not one. */
static bool span_read(const struct json_doc *d, struct span_in *s)
{
	const struct json_value *r = json_doc__root(d);
	int64_t end = 0;

	memset(s, 0, sizeof(*s));
	if (!r || r->type != JSON_OBJECT)
		return false;
	s->root = r;
	s->trace_id = member_str(d, r, "trace_id", NULL);
	s->span_id = member_str(d, r, "span_id", NULL);
	s->parent = member_str(d, r, "parent_span_id", NULL);
	s->name = member_str(d, r, "name", &s->name_len);
	s->kind = member_str(d, r, "kind", NULL);
	s->status = member_str(d, r, "status", NULL);
	s->status_msg = member_str(d, r, "status_message", &s->status_msg_len);
	s->service = member_str(d, r, "service.name", &s->service_len);
	s->tracestate = member_str(d, r, "tracestate", NULL);
	if (!is_hex(s->trace_id, 32) || !is_hex(s->span_id, 16) || !s->name ||
	    !member_int(d, r, "start_unix_ns", &s->start_ns) || s->start_ns < 0)
		return false;
	if (s->parent && !is_hex(s->parent, 16))
		s->parent = NULL; /* "" for a root */
	if (!member_int(d, r, "duration_ns", &s->dur_ns)) {
		if (member_int(d, r, "end_unix_ns", &end) && end >= s->start_ns)
			s->dur_ns = end - s->start_ns;
	}
	if (s->dur_ns < 0)
		s->dur_ns = 0;
	member_int(d, r, "pid", &s->pid);
	member_int(d, r, "dropped_events_count", &s->dropped_events);
	member_int(d, r, "trace_flags", &s->flags);
	if (s->flags < 0 || s->flags > 255)
		s->flags = 0;
	if (!s->service)
		s->service = "", s->service_len = 0;
	s->attributes = member(d, r, "attributes", JSON_OBJECT);
	s->links = member(d, r, "links", JSON_ARRAY);
	s->events = member(d, r, "events", JSON_ARRAY);
	s->resource = member(d, r, "resource", JSON_OBJECT);
	return true;
}

/* ---- writing ---------------------------------------------------------------------------- */

/* One tag {key, type, value} for a JSON value of the schema; nothing for other types. */
static bool put_tag(struct jbuf *b, const char *key, size_t klen, const struct json_value *v,
		    bool first)
{
	int64_t i;

	if (v->type != JSON_STRING && v->type != JSON_NUMBER && v->type != JSON_TRUE &&
	    v->type != JSON_FALSE)
		return false;
	jbuf_puts(b, first ? "{\"key\":" : ",{\"key\":");
	jbuf_str(b, key, klen);
	if (v->type == JSON_STRING) {
		jbuf_puts(b, ",\"type\":\"string\",\"value\":");
		jbuf_str(b, v->str, v->len);
	} else if (v->type == JSON_NUMBER && json_value_int(v, &i)) {
		jbuf_printf(b, ",\"type\":\"int64\",\"value\":%lld", (long long)i);
	} else if (v->type == JSON_NUMBER) {
		/* the number as written: already JSON */
		jbuf_puts(b, ",\"type\":\"float64\",\"value\":");
		jbuf_put(b, v->str, v->len);
	} else {
		jbuf_puts(b, ",\"type\":\"bool\",\"value\":");
		jbuf_puts(b, v->type == JSON_TRUE ? "true" : "false");
	}
	jbuf_puts(b, "}");
	return true;
}

static void put_str_tag(struct jbuf *b, const char *key, const char *val, size_t vlen, bool *first)
{
	jbuf_puts(b, *first ? "{\"key\":" : ",{\"key\":");
	jbuf_cstr(b, key);
	jbuf_puts(b, ",\"type\":\"string\",\"value\":");
	jbuf_str(b, val, vlen);
	jbuf_puts(b, "}");
	*first = false;
}

/* Every member of obj as a tag. */
static void put_object_tags(struct jbuf *b, const struct json_doc *d, const struct json_value *obj,
			    bool *first)
{
	const struct json_value *v;

	for (v = json_doc__first(d, obj); v; v = json_doc__next(d, v))
		if (put_tag(b, v->key, v->key_len, v, *first))
			*first = false;
}

static void put_references(struct jbuf *b, const struct json_doc *d, const struct span_in *s)
{
	const struct json_value *l;
	bool first = true;

	jbuf_puts(b, "\"references\":[");
	if (s->parent) {
		jbuf_printf(b, "{\"refType\":\"CHILD_OF\",\"traceID\":\"%s\",\"spanID\":\"%s\"}",
			    s->trace_id, s->parent);
		first = false;
	}
	for (l = json_doc__first(d, s->links); l; l = json_doc__next(d, l)) {
		const char *tid = member_str(d, l, "trace_id", NULL);
		const char *sid = member_str(d, l, "span_id", NULL);

		if (l->type != JSON_OBJECT || !is_hex(tid, 32) || !is_hex(sid, 16))
			continue;
		jbuf_printf(b,
			    "%s{\"refType\":\"FOLLOWS_FROM\",\"traceID\":\"%s\",\"spanID\":\"%s\"}",
			    first ? "" : ",", tid, sid);
		first = false;
	}
	jbuf_puts(b, "]");
}

const char *jaeger_kind_tag(const char *kind)
{
	if (!kind)
		return NULL;
	if (!strcmp(kind, "SERVER"))
		return "server";
	if (!strcmp(kind, "CLIENT"))
		return "client";
	if (!strcmp(kind, "PRODUCER"))
		return "producer";
	if (!strcmp(kind, "CONSUMER"))
		return "consumer";
	if (!strcmp(kind, "INTERNAL"))
		return "internal";
	return NULL;
}

static void put_tags(struct jbuf *b, const struct json_doc *d, const struct span_in *s)
{
	const char *kind = jaeger_kind_tag(s->kind);
	bool first = true;

	jbuf_puts(b, "\"tags\":[");
	if (kind)
		put_str_tag(b, "span.kind", kind, strlen(kind), &first);
	if (s->status && !strcmp(s->status, "ERROR")) {
		jbuf_puts(b, first ? "" : ",");
		jbuf_puts(b, "{\"key\":\"error\",\"type\":\"bool\",\"value\":true}");
		first = false;
		put_str_tag(b, "otel.status_code", "ERROR", 5, &first);
	} else if (s->status && !strcmp(s->status, "OK")) {
		put_str_tag(b, "otel.status_code", "OK", 2, &first);
	}
	if (s->status_msg && s->status_msg_len)
		put_str_tag(b, "otel.status_description", s->status_msg, s->status_msg_len, &first);
	if (s->tracestate && *s->tracestate)
		put_str_tag(b, "w3c.tracestate", s->tracestate, strlen(s->tracestate), &first);
	if (s->dropped_events > 0) {
		/* log lines over the span's bound (--capture-logs): Jaeger has no field for it */
		jbuf_printf(b,
			    "%s{\"key\":\"otel.dropped_events_count\",\"type\":\"int64\","
			    "\"value\":%lld}",
			    first ? "" : ",", (long long)s->dropped_events);
		first = false;
	}
	put_object_tags(b, d, s->attributes, &first);
	jbuf_puts(b, "]");
}

/* Span events (a "name", "time_unix_ns" and "attributes" each) as Jaeger logs. */
static void put_logs(struct jbuf *b, const struct json_doc *d, const struct span_in *s)
{
	const struct json_value *e;
	bool first_log = true;

	jbuf_puts(b, "\"logs\":[");
	for (e = json_doc__first(d, s->events); e; e = json_doc__next(d, e)) {
		size_t nlen = 0;
		const char *name = member_str(d, e, "name", &nlen);
		bool first = true;
		int64_t t;

		if (e->type != JSON_OBJECT || !member_int(d, e, "time_unix_ns", &t) || t < 0)
			continue;
		jbuf_printf(b, "%s{\"timestamp\":%lld,\"fields\":[", first_log ? "" : ",",
			    (long long)(t / 1000));
		if (name)
			put_str_tag(b, "event", name, nlen, &first);
		put_object_tags(b, d, member(d, e, "attributes", JSON_OBJECT), &first);
		jbuf_puts(b, "]}");
		first_log = false;
	}
	jbuf_puts(b, "]");
}

struct process {
	const char *line; /* the first span line of the process, for its resource */
	size_t len;
	char *service;
	size_t service_len;
	int64_t pid;
};

struct processes {
	struct process p[JAEGER_MAX_PROCESSES];
	unsigned n;
};

/* The index of s's process, added when new; -ENOMEM. */
static int process_of(struct processes *ps, const struct span_in *s, const char *line, size_t len)
{
	struct process *p;
	unsigned i;

	for (i = 0; i < ps->n; i++)
		if (ps->p[i].pid == s->pid && ps->p[i].service_len == s->service_len &&
		    !memcmp(ps->p[i].service, s->service, s->service_len))
			return (int)i;
	if (ps->n == JAEGER_MAX_PROCESSES)
		return (int)ps->n - 1;
	p = &ps->p[ps->n];
	p->service = malloc(s->service_len + 1);
	if (!p->service)
		return -ENOMEM;
	memcpy(p->service, s->service, s->service_len);
	p->service[s->service_len] = '\0';
	p->service_len = s->service_len;
	p->pid = s->pid;
	p->line = line;
	p->len = len;
	return (int)ps->n++;
}

static void put_span(struct jbuf *b, const struct json_doc *d, const struct span_in *s, int proc,
		     bool first)
{
	jbuf_printf(b, "%s{\"traceID\":\"%s\",\"spanID\":\"%s\",\"flags\":%lld,\"operationName\":",
		    first ? "" : ",", s->trace_id, s->span_id, (long long)s->flags);
	jbuf_str(b, s->name, s->name_len);
	jbuf_puts(b, ",");
	put_references(b, d, s);
	jbuf_printf(b, ",\"startTime\":%lld,\"duration\":%lld,", (long long)(s->start_ns / 1000),
		    (long long)(s->dur_ns / 1000));
	put_tags(b, d, s);
	jbuf_puts(b, ",");
	put_logs(b, d, s);
	jbuf_printf(b, ",\"processID\":\"p%d\",\"warnings\":null}", proc + 1);
}

static void put_processes(struct jbuf *b, struct json_doc *d, const struct processes *ps)
{
	unsigned i;

	jbuf_puts(b, "\"processes\":{");
	for (i = 0; i < ps->n; i++) {
		const struct process *p = &ps->p[i];
		struct span_in s;
		bool first = true;

		jbuf_printf(b, "%s\"p%u\":{\"serviceName\":", i ? "," : "", i + 1);
		jbuf_str(b, p->service, p->service_len);
		jbuf_puts(b, ",\"tags\":[");
		if (json_doc__parse(d, p->line, p->len) == 0 && span_read(d, &s))
			put_object_tags(b, d, s.resource, &first);
		if (p->pid > 0)
			jbuf_printf(b,
				    "%s{\"key\":\"process.pid\",\"type\":\"int64\",\"value\":%lld}",
				    first ? "" : ",", (long long)p->pid);
		jbuf_puts(b, "]}");
	}
	jbuf_puts(b, "}");
}

int jaeger_trace_json(struct jbuf *out, const char *const *lines, const size_t *lens, size_t n,
		      struct jaeger_stats *st)
{
	struct processes *ps = calloc(1, sizeof(*ps));
	struct jaeger_stats local = {0};
	char trace_id[33] = "";
	struct json_doc d;
	struct span_in s;
	size_t i, mark = out->len;
	int err = 0, proc;
	unsigned k;

	if (!st)
		st = &local;
	if (!ps)
		return -ENOMEM;
	json_doc__init(&d);
	for (i = 0; i < n && !out->err; i++) {
		if (json_doc__parse(&d, lines[i], lens[i]) || !span_read(&d, &s)) {
			st->malformed++;
			continue;
		}
		if (!trace_id[0]) {
			memcpy(trace_id, s.trace_id, 33);
			jbuf_printf(out, "{\"traceID\":\"%s\",\"spans\":[", trace_id);
		} else if (strcmp(trace_id, s.trace_id)) {
			st->other_trace++;
			continue;
		}
		proc = process_of(ps, &s, lines[i], lens[i]);
		if (proc < 0) {
			err = proc;
			break;
		}
		put_span(out, &d, &s, proc, st->spans == 0);
		st->spans++;
	}
	if (!err && !out->err && trace_id[0]) {
		jbuf_puts(out, "],");
		put_processes(out, &d, ps);
		jbuf_puts(out, ",\"warnings\":null}");
	}
	for (k = 0; k < ps->n; k++)
		free(ps->p[k].service);
	free(ps);
	json_doc__free(&d);
	if (!err)
		err = out->err ? out->err : trace_id[0] ? 0 : -ENOENT;
	if (err && !out->err && out->len > mark) {
		out->len = mark; /* no half-written trace */
		out->p[mark] = '\0';
	}
	return err;
}

/* ---- durations -------------------------------------------------------------------------- */

static double unit_ns(const char *u, size_t n)
{
	static const struct {
		const char *name;
		double ns;
	} units[] = {
	    {"ns", 1},	 {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
	    {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},	  {"h", 3600e9},
	};
	size_t i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strlen(units[i].name) == n && !memcmp(units[i].name, u, n))
			return units[i].ns;
	return 0;
}

int jaeger_parse_duration(const char *s, uint64_t *ns)
{
	double total = 0;
	const char *p = s;

	if (!s || !*s || strlen(s) > 64)
		return -EINVAL;
	if (!strcmp(s, "0")) {
		*ns = 0;
		return 0;
	}
	while (*p) {
		const char *num = p, *u;
		double v, mul;
		char *end;

		while ((*p >= '0' && *p <= '9') || *p == '.')
			p++;
		if (p == num)
			return -EINVAL;
		v = strtod(num, &end);
		if (end != p)
			return -EINVAL;
		u = p;
		while (*p && !((*p >= '0' && *p <= '9') || *p == '.'))
			p++;
		mul = unit_ns(u, (size_t)(p - u));
		if (mul == 0)
			return -EINVAL;
		total += v * mul;
	}
	if (!isfinite(total) || total > 1e19)
		return -EINVAL;
	*ns = (uint64_t)total;
	return 0;
}
