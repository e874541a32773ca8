// SPDX-License-Identifier: BSD-2-Clause
/*
 * OTLP JSON into span lines (see tsource_otlp.h). The mapping is the one of
 * opentelemetry-proto's "JSON Protobuf Encoding": a receiver must accept lowerCamelCase and
 * the .proto's field names, ids as hex (not base64), 64-bit integers as decimal strings or
 * numbers, enums as numbers (names accepted too, as protobuf's JSON mapping allows), and
 * omitted fields as their zero value.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "tsource_otlp.h"

/* A member by its JSON (lowerCamelCase) name or its .proto name. */
static const struct json_value *field(const struct json_doc *d, const struct json_value *obj,
				      const char *camel, const char *proto)
{
	const struct json_value *v = json_doc__member(d, obj, camel);

	return v ? v : json_doc__member(d, obj, proto);
}

/* A 64-bit unsigned integer written as a number or as a decimal string. */
static bool json_u64(const struct json_value *v, uint64_t *out)
{
	const char *p;
	uint64_t n = 0;

	if (!v || (v->type != JSON_NUMBER && v->type != JSON_STRING) || !v->len)
		return false;
	for (p = v->str; p < v->str + v->len; p++) {
		unsigned digit = (unsigned)(*p - '0');

		if (digit > 9 || n > (UINT64_MAX - digit) / 10)
			return false;
		n = n * 10 + digit;
	}
	*out = n;
	return true;
}

/* A signed 64-bit integer written as a number or a decimal string. */
static bool json_i64(const struct json_value *v, int64_t *out)
{
	struct json_value copy;

	if (!v)
		return false;
	if (v->type == JSON_NUMBER)
		return json_value_int(v, out);
	if (v->type != JSON_STRING || !v->len || v->len > 20)
		return false;
	/* json_value_int reads a number's text: the string's text is checked the same way */
	for (size_t i = v->str[0] == '-'; i < v->len; i++)
		if (v->str[i] < '0' || v->str[i] > '9')
			return false;
	if (v->len == (size_t)(v->str[0] == '-') ||
	    (v->str[v->str[0] == '-'] == '0' && v->len > (size_t)1 + (v->str[0] == '-')))
		return false;
	copy = *v;
	copy.type = JSON_NUMBER;
	return json_value_int(&copy, out);
}

/* An enum: its number, or its name among names[0..n) (the proto's value names). */
static bool json_enum(const struct json_value *v, const char *const *names, int n, int *out)
{
	int64_t i;

	if (!v) {
		*out = 0;
		return true;
	}
	if (v->type == JSON_NUMBER)
		return json_value_int(v, &i) && i >= 0 && i < n && (*out = (int)i, true);
	for (int k = 0; v->type == JSON_STRING && k < n; k++)
		if (strcmp(v->str, names[k]) == 0 && strlen(names[k]) == v->len) {
			*out = k;
			return true;
		}
	return false;
}

static const char *const kind_enum[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL",
					"SPAN_KIND_SERVER",	 "SPAN_KIND_CLIENT",
					"SPAN_KIND_PRODUCER",	 "SPAN_KIND_CONSUMER"};
static const char *const kind_names[] = {"UNSPECIFIED", "INTERNAL", "SERVER",
					 "CLIENT",	"PRODUCER", "CONSUMER"};
static const char *const status_enum[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
					  "STATUS_CODE_ERROR"};
static const char *const status_names[] = {"UNSET", "OK", "ERROR"};

/* AnyValue as JSON text into b (arrays and kvlists are written as a string attribute
 * holding this text: the span schema has scalar attributes only). */
static bool render_any(struct tbuf *b, const struct json_doc *d, const struct json_value *any);

static bool render_list(struct tbuf *b, const struct json_doc *d, const struct json_value *arr,
			bool kv)
{
	bool first = true;

	if (!arr || arr->type != JSON_ARRAY)
		return false;
	tbuf_put(b, kv ? "{" : "[", 1);
	for (const struct json_value *e = json_doc__first(d, arr); e; e = json_doc__next(d, e)) {
		const struct json_value *val = e;

		if (!first)
			tbuf_put(b, ",", 1);
		first = false;
		if (kv) {
			const struct json_value *key = json_doc__member(d, e, "key");

			if (!key || key->type != JSON_STRING)
				return false;
			tbuf_put_str(b, key->str, key->len);
			tbuf_put(b, ":", 1);
			val = json_doc__member(d, e, "value");
			if (!val) {
				tbuf_put(b, "null", 4);
				continue;
			}
		}
		if (!render_any(b, d, val))
			return false;
	}
	tbuf_put(b, kv ? "}" : "]", 1);
	return true;
}

static bool render_any(struct tbuf *b, const struct json_doc *d, const struct json_value *any)
{
	const struct json_value *v = json_doc__first(d, any);
	int64_t i;

	if (!any || any->type != JSON_OBJECT)
		return false;
	if (!v) {
		tbuf_put(b, "null", 4);
		return true;
	}
	if (!strcmp(v->key, "stringValue") || !strcmp(v->key, "string_value") ||
	    !strcmp(v->key, "bytesValue") || !strcmp(v->key, "bytes_value")) {
		if (v->type != JSON_STRING)
			return false;
		tbuf_put_str(b, v->str, v->len);
	} else if (!strcmp(v->key, "boolValue") || !strcmp(v->key, "bool_value")) {
		if (v->type != JSON_TRUE && v->type != JSON_FALSE)
			return false;
		tbuf_put(b, v->type == JSON_TRUE ? "true" : "false", v->type == JSON_TRUE ? 4 : 5);
	} else if (!strcmp(v->key, "intValue") || !strcmp(v->key, "int_value")) {
		if (!json_i64(v, &i))
			return false;
		tbuf_put_i64(b, i);
	} else if (!strcmp(v->key, "doubleValue") || !strcmp(v->key, "double_value")) {
		if (v->type == JSON_NUMBER)
			tbuf_put(b, v->str, v->len);
		else if (v->type == JSON_STRING) /* "NaN", "Infinity" */
			tbuf_put_str(b, v->str, v->len);
		else
			return false;
	} else if (!strcmp(v->key, "arrayValue") || !strcmp(v->key, "array_value")) {
		return render_list(b, d, json_doc__member(d, v, "values"), false);
	} else if (!strcmp(v->key, "kvlistValue") || !strcmp(v->key, "kvlist_value")) {
		return render_list(b, d, json_doc__member(d, v, "values"), true);
	} else {
		return false;
	}
	return true;
}

/* Where an attribute goes: the span's attributes, or (as strings) the resource. */
enum attr_dest { TO_ATTRIBUTES, TO_RESOURCE };

/* One KeyValue into the line; false when it cannot be read (the caller counts it). */
static bool put_kv(struct tline *l, const struct json_doc *d, const struct json_value *kv,
		   enum attr_dest dest)
{
	const struct json_value *key = json_doc__member(d, kv, "key");
	const struct json_value *any = json_doc__member(d, kv, "value");
	const struct json_value *v = json_doc__first(d, any);
	struct tbuf text = {.max = TCONV_MAX_VALUE + 64};
	int64_t i;
	bool ok = true;

	if (!key || key->type != JSON_STRING || !any || any->type != JSON_OBJECT)
		return false;
	if (v && (!strcmp(v->key, "stringValue") || !strcmp(v->key, "string_value")) &&
	    v->type == JSON_STRING) {
		tline_str(l, key->str, key->len, v->str, v->len);
	} else if (dest == TO_ATTRIBUTES && v &&
		   (!strcmp(v->key, "intValue") || !strcmp(v->key, "int_value"))) {
		if (!json_i64(v, &i))
			return false;
		tline_int(l, key->str, key->len, i);
	} else if (dest == TO_ATTRIBUTES && v &&
		   (!strcmp(v->key, "boolValue") || !strcmp(v->key, "bool_value"))) {
		if (v->type != JSON_TRUE && v->type != JSON_FALSE)
			return false;
		tline_bool(l, key->str, key->len, v->type == JSON_TRUE);
	} else {
		/* anything else as its JSON text; a scalar of the resource without quotes */
		ok = render_any(&text, d, any) && !text.full;
		if (ok && text.len >= 2 && text.data[0] == '"') {
			struct json_doc one;

			/* the string's own text, not its quoted form */
			json_doc__init(&one);
			ok = json_doc__parse(&one, text.data, text.len) == 0;
			if (ok)
				tline_str(l, key->str, key->len, json_doc__root(&one)->str,
					  json_doc__root(&one)->len);
			json_doc__free(&one);
		} else if (ok) {
			tline_str(l, key->str, key->len, text.data, text.len);
		}
	}
	tbuf_free(&text);
	return ok;
}

/* Every KeyValue of the array attrs (for the resource: but service.name, the top-level field). */
static void put_kvs(struct tline *l, const struct json_doc *d, const struct json_value *attrs,
		    enum attr_dest dest, uint64_t *dropped)
{
	if (!attrs)
		return;
	if (attrs->type != JSON_ARRAY) {
		(*dropped)++;
		return;
	}
	for (const struct json_value *kv = json_doc__first(d, attrs); kv;
	     kv = json_doc__next(d, kv)) {
		const struct json_value *key = json_doc__member(d, kv, "key");

		if (dest == TO_RESOURCE && key && key->type == JSON_STRING &&
		    strcmp(key->str, "service.name") == 0)
			continue;
		if (!put_kv(l, d, kv, dest))
			(*dropped)++;
	}
}

/* The string value of attribute name in attrs, or NULL. */
static const struct json_value *attr_string(const struct json_doc *d,
					    const struct json_value *attrs, const char *name)
{
	for (const struct json_value *kv = json_doc__first(d, attrs); kv;
	     kv = json_doc__next(d, kv)) {
		const struct json_value *key = json_doc__member(d, kv, "key");
		const struct json_value *v;

		if (!key || key->type != JSON_STRING || strcmp(key->str, name) != 0)
			continue;
		v = field(d, json_doc__member(d, kv, "value"), "stringValue", "string_value");
		return v && v->type == JSON_STRING ? v : NULL;
	}
	return NULL;
}

/* What a span shares with the others of its resource. */
struct otlp_resource {
	const struct json_value *attrs; /* KeyValue array, or NULL */
	const struct json_value *service;
	uint64_t pid;
};

static bool read_id(const struct json_doc *d, const struct json_value *span, const char *camel,
		    const char *proto, uint8_t *out, size_t n)
{
	const struct json_value *v = field(d, span, camel, proto);

	return v && v->type == JSON_STRING && tconv_parse_id(v->str, v->len, out, n, false);
}

static void put_links(struct tconv *c, const struct json_doc *d, const struct json_value *links,
		      uint64_t *dropped)
{
	for (const struct json_value *k = json_doc__first(d, links); k; k = json_doc__next(d, k)) {
		uint8_t trace[16], span[8];

		if (read_id(d, k, "traceId", "trace_id", trace, 16) &&
		    read_id(d, k, "spanId", "span_id", span, 8))
			tline_link(&c->line, trace, span, "link");
		else
			(*dropped)++;
	}
}

/* The fixed fields of a span; NULL, or why it is not a span. */
static const char *read_span(const struct json_doc *d, const struct json_value *sp, struct tspan *s)
{
	const struct json_value *v, *status;
	uint64_t flags;
	int kind, code;

	if (sp->type != JSON_OBJECT)
		return "a span that is not an object";
	if (!read_id(d, sp, "traceId", "trace_id", s->trace_id, 16))
		return "a span without a valid traceId";
	if (!read_id(d, sp, "spanId", "span_id", s->span_id, 8))
		return "a span without a valid spanId";
	v = field(d, sp, "parentSpanId", "parent_span_id");
	if (v && !(v->type == JSON_STRING && v->len == 0) &&
	    !read_id(d, sp, "parentSpanId", "parent_span_id", s->parent_span_id, 8))
		return "a span with an invalid parentSpanId";
	v = json_doc__member(d, sp, "name");
	if (v && v->type != JSON_STRING)
		return "a span whose name is not a string";
	s->name = v ? v->str : "";
	s->name_len = v ? v->len : 0;
	if (!json_enum(json_doc__member(d, sp, "kind"), kind_enum, 6, &kind))
		return "a span with an unknown kind";
	s->kind = kind_names[kind];
	v = field(d, sp, "startTimeUnixNano", "start_time_unix_nano");
	if (v && !json_u64(v, &s->start_ns))
		return "a span whose startTimeUnixNano is not a 64-bit unsigned integer";
	v = field(d, sp, "endTimeUnixNano", "end_time_unix_nano");
	if (v && !json_u64(v, &s->end_ns))
		return "a span whose endTimeUnixNano is not a 64-bit unsigned integer";
	status = json_doc__member(d, sp, "status");
	if (status && status->type != JSON_OBJECT)
		return "a span whose status is not an object";
	if (!json_enum(json_doc__member(d, status, "code"), status_enum, 3, &code))
		return "a span with an unknown status code";
	s->status = status_names[code];
	v = json_doc__member(d, status, "message");
	if (v && v->type != JSON_STRING)
		return "a span whose status message is not a string";
	s->status_message = v ? v->str : "";
	s->status_message_len = v ? v->len : 0;
	v = field(d, sp, "traceState", "trace_state");
	if (v && v->type != JSON_STRING)
		return "a span whose traceState is not a string";
	s->tracestate = v ? v->str : "";
	s->tracestate_len = v ? v->len : 0;
	/* flags' low byte is the W3C trace-flags (proto 1.1); older exporters omit it, and a
	 * span that was exported was sampled */
	v = json_doc__member(d, sp, "flags");
	if (v && !json_u64(v, &flags))
		return "a span whose flags are not an integer";
	s->trace_flags = v ? (uint32_t)(flags & 0xff) : 1;
	return NULL;
}

static void convert_span(struct tconv *c, const struct json_doc *d, const struct json_value *sp,
			 const struct otlp_resource *r, uint64_t *dropped)
{
	struct tspan s = {0};
	const char *why = read_span(d, sp, &s);

	c->st->lines++; /* spans seen, for a converted source */
	if (why) {
		tconv_malformed(c, "%s: skipped", why);
		return;
	}
	s.service = r->service ? r->service->str : NULL;
	s.service_len = r->service ? r->service->len : 0;
	s.pid = r->pid;
	tline_begin(&c->line, &s);
	put_kvs(&c->line, d, json_doc__member(d, sp, "attributes"), TO_ATTRIBUTES, dropped);
	tline_links(&c->line);
	put_links(c, d, json_doc__member(d, sp, "links"), dropped);
	tline_resource(&c->line);
	put_kvs(&c->line, d, r->attrs, TO_RESOURCE, dropped);
	*dropped += c->line.dropped;
	c->line.dropped = 0;
	tconv_emit(c);
}

/* The spans of one ScopeSpans (or the older InstrumentationLibrarySpans). */
static void convert_scope(struct tconv *c, const struct json_doc *d, const struct json_value *ss,
			  const struct otlp_resource *r, uint64_t *dropped)
{
	const struct json_value *spans = json_doc__member(d, ss, "spans");

	if (spans && spans->type != JSON_ARRAY) {
		tconv_malformed(c, "\"spans\" is not an array: skipped");
		return;
	}
	for (const struct json_value *sp = json_doc__first(d, spans); sp && !c->stop;
	     sp = json_doc__next(d, sp))
		convert_span(c, d, sp, r, dropped);
}

static void convert_resource_spans(struct tconv *c, const struct json_doc *d,
				   const struct json_value *rs, uint64_t *dropped)
{
	static const char *const scope_names[][2] = {
	    {"scopeSpans", "scope_spans"},
	    {"instrumentationLibrarySpans", "instrumentation_library_spans"}};
	const struct json_value *resource = json_doc__member(d, rs, "resource"), *pid;
	struct otlp_resource r = {0};
	int64_t ipid;

	if (rs->type != JSON_OBJECT || (resource && resource->type != JSON_OBJECT)) {
		tconv_malformed(c, "a resourceSpans entry that is not an object: skipped");
		return;
	}
	r.attrs = json_doc__member(d, resource, "attributes");
	if (r.attrs && r.attrs->type != JSON_ARRAY) {
		(*dropped)++;
		r.attrs = NULL;
	}
	r.service = attr_string(d, r.attrs, "service.name");
	for (const struct json_value *kv = json_doc__first(d, r.attrs); kv;
	     kv = json_doc__next(d, kv)) {
		const struct json_value *key = json_doc__member(d, kv, "key");

		if (!key || key->type != JSON_STRING || strcmp(key->str, "process.pid") != 0)
			continue;
		pid = field(d, json_doc__member(d, kv, "value"), "intValue", "int_value");
		if (json_i64(pid, &ipid) && ipid > 0)
			r.pid = (uint64_t)ipid;
		break;
	}
	for (size_t n = 0; n < sizeof(scope_names) / sizeof(scope_names[0]); n++) {
		const struct json_value *list = field(d, rs, scope_names[n][0], scope_names[n][1]);

		if (list && list->type != JSON_ARRAY) {
			tconv_malformed(c, "\"%s\" is not an array: skipped", scope_names[n][0]);
			continue;
		}
		for (const struct json_value *ss = json_doc__first(d, list); ss && !c->stop;
		     ss = json_doc__next(d, ss))
			convert_scope(c, d, ss, &r, dropped);
	}
}

int tsource_otlp_doc(struct tconv *c, const struct json_doc *d, const struct json_value *root,
		     uint64_t *dropped)
{
	const struct json_value *list, *inner;

	if (!root || root->type != JSON_OBJECT) {
		tconv_malformed(c, "not a JSON object: skipped");
		return c->stop;
	}
	/* Tempo's /api/v2/traces/{id}: {"trace":{"resourceSpans":[...]}} */
	inner = json_doc__member(d, root, "trace");
	if (inner && inner->type == JSON_OBJECT)
		root = inner;
	list = field(d, root, "resourceSpans", "resource_spans");
	if (!list)
		list = json_doc__member(d, root, "batches"); /* Tempo's /api/traces/{id} */
	if (!list) {
		/* an empty trace or export request is {} (proto3 omits empty lists) */
		if (root->count)
			tconv_malformed(c, "no \"resourceSpans\" (not OTLP JSON traces): skipped");
		return c->stop;
	}
	if (list->type != JSON_ARRAY) {
		tconv_malformed(c, "\"resourceSpans\" is not an array: skipped");
		return c->stop;
	}
	for (const struct json_value *rs = json_doc__first(d, list); rs && !c->stop;
	     rs = json_doc__next(d, rs))
		convert_resource_spans(c, d, rs, dropped);
	return c->stop;
}

/*
 * The next line of f into *buf (grown up to max bytes, *cap its size), without its '\n'.
 * Returns its length, or -1 at end of file, -ENOMEM. A longer line is consumed whole and
 * flagged *overlong.
 */
static long read_long_line(FILE *f, char **buf, size_t *cap, size_t max, bool *overlong)
{
	size_t n = 0;
	int ch;

	*overlong = false;
	while ((ch = getc_unlocked(f)) != EOF && ch != '\n') {
		if (n == max) {
			*overlong = true;
			continue;
		}
		if (n == *cap) {
			size_t ncap = *cap ? *cap * 2 : 64 * 1024;
			char *nbuf;

			if (ncap > max)
				ncap = max;
			nbuf = realloc(*buf, ncap);
			if (!nbuf)
				return -ENOMEM;
			*buf = nbuf;
			*cap = ncap;
		}
		(*buf)[n++] = (char)ch;
	}
	if (ch == EOF && n == 0 && !*overlong)
		return -1;
	return (long)n;
}

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

int tsource_otlp_read(const char *prog, const char *rest, const struct tsource_opts *opts,
		      span_line_fn fn, void *ctx, struct tsource_stats *stats)
{
	struct tconv c = {.prog = prog, .fn = fn, .ctx = ctx, .st = stats};
	char where[300], *line = NULL;
	FILE *f = strcmp(rest, "-") == 0 ? stdin : fopen(rest, "r");
	struct json_doc doc;
	uint64_t dropped = 0, lineno = 0;
	size_t cap = 0;
	bool overlong;
	int err = 0;
	long n;

	(void)opts; /* a file is read whole */
	snprintf(where, sizeof(where), "otlp:%s", rest);
	c.where = where;
	if (!f) {
		err = -errno;
		fprintf(stderr, "%s: cannot open %s: %s\n", prog, rest, strerror(-err));
		return err;
	}
	json_doc__init(&doc);
	while (!c.stop && (n = read_long_line(f, &line, &cap, OTLP_DOC_MAX_LEN, &overlong)) != -1) {
		if (n < 0) {
			err = (int)n;
			fprintf(stderr, "%s: %s: %s\n", prog, where, strerror(-err));
			break;
		}
		lineno++;
		if (overlong) {
			tconv_malformed(&c, "line %" PRIu64 ": longer than %u MiB: skipped", lineno,
					OTLP_DOC_MAX_LEN >> 20);
			continue;
		}
		if (blank(line, (size_t)n))
			continue;
		if (json_doc__parse_max(&doc, line, (size_t)n, OTLP_DOC_MAX_LEN,
					OTLP_DOC_MAX_VALUES)) {
			tconv_malformed(&c, "line %" PRIu64 ": not JSON (%s at byte %zu): skipped",
					lineno, doc.err, doc.err_off + 1);
			continue;
		}
		tsource_otlp_doc(&c, &doc, json_doc__root(&doc), &dropped);
	}
	if (!err && ferror(f)) {
		err = -EIO;
		fprintf(stderr, "%s: cannot read %s: %s\n", prog, rest, strerror(errno));
	}
	if (dropped)
		fprintf(
		    stderr,
		    "%s: %s: %" PRIu64
		    " attribute(s) or link(s) left out (unreadable, repeated, or over %u a span)\n",
		    prog, where, dropped, TCONV_MAX_KEYS);
	if (f != stdin)
		fclose(f);
	free(line);
	json_doc__free(&doc);
	tconv_free(&c);
	return err ? err : c.stop;
}
