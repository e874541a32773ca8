// SPDX-License-Identifier: BSD-2-Clause
/*
 * JSON lines sink: one object per finished span, one span per line, flushed per line so a
 * consumer reading a pipe (jq, a test harness) sees each span as soon as it ends.
 *
 * Schema (stable; keys always in this order, fields marked "optional" are omitted when
 * unknown):
 *
 *   {
 *     "trace_id":       "32 lowercase hex",
 *     "span_id":        "16 lowercase hex",
 *     "parent_span_id": "16 lowercase hex", or "" for a root span,
 *     "name":           "GET /x",
 *     "kind":           "SERVER" | "CLIENT"  ("UNSPECIFIED" if unset),
 *     "start_unix_ns":  integer,
 *     "end_unix_ns":    integer,
 *     "duration_ns":    integer (end - start, 0 if the clock went backwards),
 *     "status":         "UNSET" | "OK" | "ERROR",
 *     "status_message": "..." ("" when none),
 *     "service.name":   "..." ("unknown_service" when the process is not known),
 *     "pid":            integer,
 *     "tid":            integer,
 *     "trace_flags":    integer (W3C trace-flags, bit 0 = sampled),
 *     "tracestate":     "..." ("" when none),
 *     "attributes":     { "<semconv key>": string | integer | true/false, ... },
 *     "links":          [ { "trace_id": "32 hex", "span_id": "16 hex", "reason": "..." }, ... ],
 *     "resource":       { "process.executable.name": "..." (optional),
 *                         "process.executable.path": "..." (optional),
 *                         "container.id": "..."            (optional),
 *                         "k8s.pod.uid": "..."             (optional),
 *                         "<key>": "<value>", ...  from the process's OTEL_RESOURCE_ATTRIBUTES }
 *                       ({} when the process is not known)
 *   }
 *
 * Integers are 64-bit decimal (unsigned, except attribute values): unix nanoseconds exceed
 * 2^53, so JavaScript consumers must parse them as BigInt.
 *
 * Strings are valid UTF-8 JSON whatever the traffic held: '"', '\' and control characters
 * are escaped (\n \r \t \b \f, others as \u00XX, including DEL and the C1 controls
 * U+0080..U+009F so that `tail -f` of the output cannot drive a terminal); each byte that is
 * not part of well-formed UTF-8 becomes \ufffd. An attribute key that appears twice in a span
 * keeps its first value, as span_find_attr() does, and a resource key from
 * OTEL_RESOURCE_ATTRIBUTES never repeats one above, so no object has duplicate keys.
 */
#include "sink.h"
#include "resource.h"
#include "span.h"
#include "text.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct json_sink {
	struct sink base;
	FILE *out;
	uint64_t spans_written;
	uint64_t write_errors;
	uint64_t unflushed; /* spans written to stdio since the last successful flush */
};

static struct json_sink *to_json_sink(struct sink *sk)
{
	return (struct json_sink *)sk;
}

/* The escape for one ASCII byte, or NULL if it is written as is. buf holds 7 bytes. */
static const char *json_ascii_escape(unsigned char c, char buf[7])
{
	switch (c) {
	case '"':
		return "\\\"";
	case '\\':
		return "\\\\";
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	case '\b':
		return "\\b";
	case '\f':
		return "\\f";
	}
	if (c < 0x20 || c == 0x7f) {
		snprintf(buf, 7, "\\u%04x", c);
		return buf;
	}
	return NULL;
}

/* Write len bytes of untrusted text as a JSON string (see the schema comment for the rules). */
static void json_put_str(FILE *out, const char *str, size_t len)
{
	const unsigned char *p = (const unsigned char *)str;
	const unsigned char *end = p + len;
	const unsigned char *run = p; /* start of bytes not yet written, copied verbatim */
	char esc_buf[7];

	putc('"', out);
	while (p < end) {
		size_t n = utf8_sequence_len(p, (size_t)(end - p));
		const char *esc = NULL;

		if (n == 1)
			esc = json_ascii_escape(*p, esc_buf);
		else if (n == 0)
			esc = "\\ufffd";
		else if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
			/* C1 control: valid JSON as is, but a terminal would obey it */
			snprintf(esc_buf, sizeof(esc_buf), "\\u%04x", p[1]);
			esc = esc_buf;
		}
		if (!esc) {
			p += n;
			continue;
		}
		fwrite(run, 1, (size_t)(p - run), out);
		fputs(esc, out);
		p += n ? n : 1;
		run = p;
	}
	fwrite(run, 1, (size_t)(p - run), out);
	putc('"', out);
}

/* A C string (NULL is written as ""); fixed-size fields are bounded by their size. */
static void json_put_cstr(FILE *out, const char *str, size_t maxlen)
{
	json_put_str(out, str ? str : "", str ? strnlen(str, maxlen) : 0);
}

static void json_put_hex(FILE *out, const uint8_t *bytes, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	putc('"', out);
	for (size_t i = 0; i < n; i++) {
		putc(digits[bytes[i] >> 4], out);
		putc(digits[bytes[i] & 0xf], out);
	}
	putc('"', out);
}

/* Writes `,"key":` (the comma unless first) and clears *first. */
static void json_put_key(FILE *out, const char *key, bool *first)
{
	if (!*first)
		putc(',', out);
	*first = false;
	json_put_cstr(out, key, SIZE_MAX);
	putc(':', out);
}

static bool bytes_are_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static const char *kind_name(uint8_t kind)
{
	switch (kind) {
	case SPAN_KIND_SERVER:
		return "SERVER";
	case SPAN_KIND_CLIENT:
		return "CLIENT";
	}
	return "UNSPECIFIED";
}

static const char *status_name(uint8_t status)
{
	switch (status) {
	case SPAN_STATUS_OK:
		return "OK";
	case SPAN_STATUS_ERROR:
		return "ERROR";
	}
	return "UNSET";
}

static bool attr_key_seen_before(const struct span *s, unsigned idx)
{
	for (unsigned i = 0; i < idx; i++)
		if (s->attrs[i].key && strcmp(s->attrs[i].key, s->attrs[idx].key) == 0)
			return true;
	return false;
}

static void json_put_attr_value(FILE *out, const struct span *s, const struct span_attr *a)
{
	size_t off = a->off, len = a->len;

	switch (a->type) {
	case SPAN_ATTR_INT:
		fprintf(out, "%" PRId64, a->ival);
		break;
	case SPAN_ATTR_BOOL:
		fputs(a->ival ? "true" : "false", out);
		break;
	default:
		/* never read past strbuf, whatever off/len claim */
		if (off > SPAN_STRBUF)
			off = SPAN_STRBUF;
		if (len > SPAN_STRBUF - off)
			len = SPAN_STRBUF - off;
		json_put_str(out, s->strbuf + off, len);
		break;
	}
}

static void json_put_attributes(FILE *out, const struct span *s)
{
	unsigned n = s->nattrs < SPAN_MAX_ATTRS ? s->nattrs : SPAN_MAX_ATTRS;
	bool first = true;

	putc('{', out);
	for (unsigned i = 0; i < n; i++) {
		if (!s->attrs[i].key || attr_key_seen_before(s, i))
			continue;
		json_put_key(out, s->attrs[i].key, &first);
		json_put_attr_value(out, s, &s->attrs[i]);
	}
	putc('}', out);
}

static void json_put_links(FILE *out, const struct span *s)
{
	unsigned n = s->nlinks < SPAN_MAX_LINKS ? s->nlinks : SPAN_MAX_LINKS;

	putc('[', out);
	for (unsigned i = 0; i < n; i++) {
		const struct span_link *l = &s->links[i];

		if (i)
			putc(',', out);
		fputs("{\"trace_id\":", out);
		json_put_hex(out, l->trace_id, sizeof(l->trace_id));
		fputs(",\"span_id\":", out);
		json_put_hex(out, l->span_id, sizeof(l->span_id));
		fputs(",\"reason\":", out);
		json_put_cstr(out, l->reason, SIZE_MAX);
		putc('}', out);
	}
	putc(']', out);
}

/* Resource attributes the agent detects itself, each a char * field of struct resource. */
static const struct {
	const char *key;
	size_t off;
} resource_fields[] = {
    {"process.executable.name", offsetof(struct resource, exe_name)},
    {"process.executable.path", offsetof(struct resource, exe_path)},
    {"container.id", offsetof(struct resource, container_id)},
    {"k8s.pod.uid", offsetof(struct resource, pod_uid)},
};

#define N_RESOURCE_FIELDS (sizeof(resource_fields) / sizeof(resource_fields[0]))

static const char *resource_field(const struct resource *r, size_t i)
{
	return *(char *const *)((const char *)r + resource_fields[i].off);
}

/*
 * An extra (OTEL_RESOURCE_ATTRIBUTES) key already written: a detected value wins over the
 * process's own claim, and the first of two equal extras wins.
 */
static bool resource_key_written(const struct resource *r, unsigned extra_idx)
{
	const char *key = r->extra[extra_idx].key;

	/* the resolved service name is the top-level "service.name"; a second, different one
	 * here would contradict it (OTLP exports only the resolved one too) */
	if (strcmp(key, "service.name") == 0)
		return true;
	for (size_t i = 0; i < N_RESOURCE_FIELDS; i++)
		if (resource_field(r, i) && strcmp(key, resource_fields[i].key) == 0)
			return true;
	for (unsigned i = 0; i < extra_idx; i++)
		if (r->extra[i].key && strcmp(key, r->extra[i].key) == 0)
			return true;
	return false;
}

static void json_put_resource(FILE *out, const struct resource *r)
{
	bool first = true;
	unsigned nextra;

	putc('{', out);
	if (!r) {
		putc('}', out);
		return;
	}
	for (size_t i = 0; i < N_RESOURCE_FIELDS; i++) {
		if (!resource_field(r, i))
			continue;
		json_put_key(out, resource_fields[i].key, &first);
		json_put_cstr(out, resource_field(r, i), SIZE_MAX);
	}
	nextra = r->nextra < RESOURCE_MAX_EXTRA ? r->nextra : RESOURCE_MAX_EXTRA;
	for (unsigned i = 0; i < nextra; i++) {
		if (!r->extra[i].key || resource_key_written(r, i))
			continue;
		json_put_key(out, r->extra[i].key, &first);
		json_put_cstr(out, r->extra[i].value, SIZE_MAX);
	}
	putc('}', out);
}

static const char *service_name_of(const struct span *s)
{
	if (s->resource && s->resource->service_name && s->resource->service_name[0])
		return s->resource->service_name;
	return "unknown_service";
}

static void json_put_span(FILE *out, const struct span *s)
{
	uint64_t duration =
	    s->end_unix_ns >= s->start_unix_ns ? s->end_unix_ns - s->start_unix_ns : 0;

	fputs("{\"trace_id\":", out);
	json_put_hex(out, s->trace_id, sizeof(s->trace_id));
	fputs(",\"span_id\":", out);
	json_put_hex(out, s->span_id, sizeof(s->span_id));
	fputs(",\"parent_span_id\":", out);
	if (bytes_are_zero(s->parent_span_id, sizeof(s->parent_span_id)))
		fputs("\"\"", out);
	else
		json_put_hex(out, s->parent_span_id, sizeof(s->parent_span_id));
	fputs(",\"name\":", out);
	json_put_cstr(out, s->name, sizeof(s->name));
	fprintf(out, ",\"kind\":\"%s\"", kind_name(s->kind));
	fprintf(out,
		",\"start_unix_ns\":%" PRIu64 ",\"end_unix_ns\":%" PRIu64
		",\"duration_ns\":%" PRIu64,
		s->start_unix_ns, s->end_unix_ns, duration);
	fprintf(out, ",\"status\":\"%s\",\"status_message\":", status_name(s->status));
	json_put_cstr(out, s->status_message, sizeof(s->status_message));
	fputs(",\"service.name\":", out);
	json_put_cstr(out, service_name_of(s), SIZE_MAX);
	fprintf(out, ",\"pid\":%" PRIu32 ",\"tid\":%" PRIu32 ",\"trace_flags\":%u", s->pid, s->tid,
		(unsigned)s->trace_flags);
	fputs(",\"tracestate\":", out);
	json_put_cstr(out, s->tracestate, sizeof(s->tracestate));
	fputs(",\"attributes\":", out);
	json_put_attributes(out, s);
	fputs(",\"links\":", out);
	json_put_links(out, s);
	fputs(",\"resource\":", out);
	json_put_resource(out, s->resource);
	fputs("}\n", out);
}

/* Spans are flushed on the loop's 20 ms tick, not per line: a write(2) per span was a third
 * of the agent's time under load, and a pipe reader still sees each span within 20 ms. A
 * failed flush loses the spans since the previous one: they are counted as such. */
static void json_flush_now(struct json_sink *js)
{
	if (!js->unflushed)
		return;
	if (fflush(js->out) != 0 || ferror(js->out)) {
		js->write_errors += js->unflushed;
		js->spans_written -= js->unflushed;
		clearerr(js->out);
	}
	js->unflushed = 0;
}

static void json_emit(struct sink *sk, struct span *s)
{
	struct json_sink *js = to_json_sink(sk);

	if (!s)
		return;
	json_put_span(js->out, s);
	js->spans_written++;
	js->unflushed++;
	span_free(s);
}

static void json_tick(struct sink *sk, uint64_t now_ns)
{
	(void)now_ns;
	json_flush_now(to_json_sink(sk));
}

static void json_flush(struct sink *sk, int deadline_ms)
{
	(void)deadline_ms;
	json_flush_now(to_json_sink(sk));
}

static void json_print_stats(struct sink *sk, FILE *out)
{
	struct json_sink *js = to_json_sink(sk);

	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "json_spans_written", js->spans_written,
		"spans written as JSON lines");
	fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "json_write_errors", js->write_errors,
		"spans lost: writing the output failed");
}

static void json_destroy(struct sink *sk)
{
	free(to_json_sink(sk));
}

struct sink *sink_json_new(FILE *out)
{
	struct json_sink *js;

	if (!out)
		return NULL;
	js = calloc(1, sizeof(*js));
	if (!js)
		return NULL;
	js->base.name = "json";
	js->base.emit = json_emit;
	js->base.tick = json_tick;
	js->base.flush = json_flush;
	js->base.print_stats = json_print_stats;
	js->base.destroy = json_destroy;
	js->out = out;
	return &js->base;
}
