// SPDX-License-Identifier: BSD-2-Clause
/*
 * JSON lines sink: one object per finished span, one span per line. Lines are built in a
 * buffer owned by the sink, handed to stdio whenever it holds JSON_FLUSH_AT bytes and flushed
 * on the loop's 5 ms tick: a consumer reading a pipe (jq, a test harness) sees each span
 * within a few ms of its end, and a busy agent writes 64 KiB at a time.
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
 *     "events":         [ { "time_unix_ns": integer, "name": "log",
 *                           "attributes": { "log.record.original": "...",
 *                                           "log.iostream": "stdout" | "stderr" (streams),
 *                                           "log.file.path": "..." (log files),
 *                                           "hoptrace.log.truncated": true (line cut) } },
 *                         ... ]  (only with --capture-logs, when the span has log lines)
 *     "dropped_events_count": integer (only when lines were dropped: over the span's bound)
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
#include "json_write.h"
#include "resource.h"
#include "span.h"
#include "text.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSON_FLUSH_AT (64 * 1024) /* hand the buffer to stdio once it holds this much */
/* the first allocation: a span up to 16 KiB long never grows the buffer */
#define JSON_BUF_INIT (JSON_FLUSH_AT + 16 * 1024)
#define JSON_BUF_KEEP (1024 * 1024) /* a buffer grown past this by a huge span is freed */
#define JSON_ESC_MAX 6		    /* an input byte is at most 6 output bytes: \u00XX, \ufffd */

/* Output of the span being written. Writers reserve room first, then store without checks. */
struct json_buf {
	char *data;
	size_t len;
	size_t cap;
	bool nomem; /* a reservation failed: the span being written is dropped */
};

struct json_sink {
	struct sink base;
	FILE *out;
	struct json_buf buf; /* whole spans not yet handed to stdio */
	uint64_t spans_written;
	uint64_t write_errors;
	uint64_t unflushed; /* spans buffered or written to stdio since the last successful flush */
};

static struct json_sink *to_json_sink(struct sink *sk)
{
	return (struct json_sink *)sk;
}

static char *json_buf_grow(struct json_buf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : JSON_BUF_INIT;
	char *data;

	if (b->nomem)
		return NULL;
	while (cap - b->len < n) {
		if (cap > SIZE_MAX / 2)
			goto err_nomem;
		cap *= 2;
	}
	data = realloc(b->data, cap);
	if (!data)
		goto err_nomem;
	b->data = data;
	b->cap = cap;
	return b->data + b->len;

err_nomem:
	b->nomem = true;
	return NULL;
}

/* Where to write n more bytes (b->len is not advanced), or NULL if the buffer cannot grow. */
static inline char *json_buf_reserve(struct json_buf *b, size_t n)
{
	if (n <= b->cap - b->len)
		return b->data + b->len;
	return json_buf_grow(b, n);
}

static inline void json_buf_commit(struct json_buf *b, char *end)
{
	b->len = (size_t)(end - b->data);
}

/* Room for len bytes of text written as a JSON string, quotes included. */
static inline size_t json_str_room(size_t len)
{
	return len > (SIZE_MAX - 64) / JSON_ESC_MAX ? SIZE_MAX : len * JSON_ESC_MAX + 2;
}

#define put_lit(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) + sizeof(lit) - 1)

static const char hex_digits[] = "0123456789abcdef";

/*
 * What each byte of a string becomes: 0 itself; 'u' \u00XX; another letter or '"' or '\'
 * that letter after a backslash; JE_UTF8 the start of a UTF-8 sequence, checked with
 * utf8_sequence_len().
 */
#define JE_UTF8 1
static const uint8_t json_escape[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f',  'r', 'u', 'u', /* 0x00 */
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',  'u', 'u', 'u', /* 0x10 */
    0,	 0,   '"', 0,	0,   0,	  0,   0,   0,	 0,   0,   0,	0,    0,   0,	0,   /* 0x20 */
    0,	 0,   0,   0,	0,   0,	  0,   0,   0,	 0,   0,   0,	0,    0,   0,	0,   /* 0x30 */
    0,	 0,   0,   0,	0,   0,	  0,   0,   0,	 0,   0,   0,	0,    0,   0,	0,   /* 0x40 */
    0,	 0,   0,   0,	0,   0,	  0,   0,   0,	 0,   0,   0,	'\\', 0,   0,	0,   /* 0x50 */
    0,	 0,   0,   0,	0,   0,	  0,   0,   0,	 0,   0,   0,	0,    0,   0,	0,   /* 0x60 */
    0,	 0,   0,   0,	0,   0,	  0,   0,   0,	 0,   0,   0,	0,    0,   0,	'u', /* 0x70 */
    1,	 1,   1,   1,	1,   1,	  1,   1,   1,	 1,   1,   1,	1,    1,   1,	1,   /* 0x80 */
    1,	 1,   1,   1,	1,   1,	  1,   1,   1,	 1,   1,   1,	1,    1,   1,	1,   /* 0x90 */
    1,	 1,   1,   1,	1,   1,	  1,   1,   1,	 1,   1,   1,	1,    1,   1,	1,   /* 0xa0 */
    1,	 1,   1,   1,	1,   1,	  1,   1,   1,	 1,   1,   1,	1,    1,   1,	1,   /* 0xb0 */
    1,	 1,   1,   1,	1,   1,	  1,   1,   1,	 1,   1,   1,	1,    1,   1,	1,   /* 0xc0 */
    1,	 1,   1,   1,	1,   1,	  1,   1,   1,	 1,   1,   1,	1,    1,   1,	1,   /* 0xd0 */
    1,	 1,   1,   1,	1,   1,	  1,   1,   1,	 1,   1,   1,	1,    1,   1,	1,   /* 0xe0 */
    1,	 1,   1,   1,	1,   1,	  1,   1,   1,	 1,   1,   1,	1,    1,   1,	1,   /* 0xf0 */
};

static inline char *put_u00xx(char *o, unsigned char c)
{
	o = put_lit(o, "\\u00");
	*o++ = hex_digits[c >> 4];
	*o++ = hex_digits[c & 0xf];
	return o;
}

#define BYTES(c) (0x0101010101010101ull * (c))

/*
 * Whether any of 8 bytes needs more than a copy (< 0x20, '"', '\\', >= 0x7f), tested at once
 * ("Bit Twiddling Hacks": haszero, hasless; exact for whether any byte matches, which is
 * all that is asked). Traffic is mostly printable ASCII: this skips it a word at a time.
 */
static inline bool json_word_special(const unsigned char *p)
{
	uint64_t x, quote, bslash;

	memcpy(&x, p, sizeof(x));
	quote = x ^ BYTES('"');
	bslash = x ^ BYTES('\\');
	return (((x - BYTES(0x20)) & ~x) | ((quote - BYTES(1)) & ~quote) |
		((bslash - BYTES(1)) & ~bslash) | x | (x + BYTES(1))) &
	       BYTES(0x80);
}

/*
 * put_str() from the first byte that may need an escape: p. The bytes from run to p are
 * copied as they are, and so are later runs of bytes that need no escape, valid multi-byte
 * UTF-8 included.
 */
static char *put_str_escaped(char *o, const unsigned char *run, const unsigned char *p,
			     const unsigned char *end)
{
	for (;;) {
		unsigned char e;
		size_t n = 0;

		while (end - p >= 8 && !json_word_special(p))
			p += 8;
		while (p < end && !json_escape[*p])
			p++;
		if (p == end)
			break;
		e = json_escape[*p];
		if (e == JE_UTF8) {
			n = utf8_sequence_len(p, (size_t)(end - p));
			/* C1 controls (C2 80..C2 9F) are valid JSON as is, but a terminal would
			 * obey them */
			if (n > 1 && !(n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
				p += n;
				continue;
			}
		}
		memcpy(o, run, (size_t)(p - run));
		o += p - run;
		if (e == 'u') {
			o = put_u00xx(o, *p);
		} else if (e != JE_UTF8) {
			*o++ = '\\';
			*o++ = (char)e;
		} else if (n == 0) {
			o = put_lit(o, "\\ufffd");
		} else {
			o = put_u00xx(o, p[1]);
			p++;
		}
		p++;
		run = p;
	}
	memcpy(o, run, (size_t)(p - run));
	o += p - run;
	*o++ = '"';
	return o;
}

/*
 * len bytes of untrusted text as a JSON string (see the schema comment for the rules), at o
 * with json_str_room(len) bytes free. Most strings need no escape: checked a word at a time,
 * then copied whole.
 */
static char *put_str(char *o, const char *str, size_t len)
{
	const unsigned char *p = (const unsigned char *)str;
	const unsigned char *end = p + len;

	*o++ = '"';
	if (len >= 8) {
		while (end - p > 8 && !json_word_special(p))
			p += 8;
		/* the last word, overlapping bytes already checked */
		if (end - p <= 8 && !json_word_special(end - 8))
			p = end;
	} else {
		while (p < end && !json_escape[*p])
			p++;
	}
	if (p != end)
		return put_str_escaped(o, (const unsigned char *)str, p, end);
	memcpy(o, str, len);
	o += len;
	*o++ = '"';
	return o;
}

size_t json_write_room(size_t len)
{
	return json_str_room(len);
}

char *json_write_str(char *o, const char *str, size_t len)
{
	return put_str(o, str, len);
}

static void json_put_str(struct json_buf *b, const char *str, size_t len)
{
	char *o = json_buf_reserve(b, json_str_room(len));

	if (o)
		json_buf_commit(b, put_str(o, str, len));
}

/* A C string (NULL is written as ""); fixed-size fields are bounded by their size. */
static void json_put_cstr(struct json_buf *b, const char *str, size_t maxlen)
{
	json_put_str(b, str ? str : "", str ? strnlen(str, maxlen) : 0);
}

/* n bytes as 2n lowercase hex digits in quotes, at o with 2n + 2 bytes free. */
static char *put_hex(char *o, const uint8_t *bytes, size_t n)
{
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		*o++ = hex_digits[bytes[i] >> 4];
		*o++ = hex_digits[bytes[i] & 0xf];
	}
	*o++ = '"';
	return o;
}

/* v in decimal, INT64_MIN included, at o with TEXT_U64_DIGITS_MAX bytes free. */
static char *put_i64(char *o, int64_t v)
{
	if (v >= 0)
		return text_put_u64(o, (uint64_t)v);
	*o++ = '-';
	return text_put_u64(o, 0 - (uint64_t)v);
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

/* A JSON string whose text needs no escape, at o with strlen(str) + 2 bytes free. */
static char *put_plain_str(char *o, const char *str)
{
	size_t n = strlen(str);

	*o++ = '"';
	memcpy(o, str, n);
	o += n;
	*o++ = '"';
	return o;
}

/* `,"key":value` (the comma unless first) for attribute a, its key klen bytes long. */
static void json_put_attr(struct json_buf *b, const struct span *s, const struct span_attr *a,
			  size_t klen, bool first)
{
	size_t off = a->off, len = a->len;
	char *o;

	/* never read past strbuf, whatever off/len claim */
	if (off > SPAN_STRBUF)
		off = SPAN_STRBUF;
	if (len > SPAN_STRBUF - off)
		len = SPAN_STRBUF - off;
	/* SPAN_STRBUF bounds the value; keys are our own string literals */
	o = json_buf_reserve(b, json_str_room(klen) + json_str_room(len) + TEXT_U64_DIGITS_MAX + 2);
	if (!o)
		return;
	if (!first)
		*o++ = ',';
	o = put_str(o, a->key, klen);
	*o++ = ':';
	switch (a->type) {
	case SPAN_ATTR_INT:
		o = put_i64(o, a->ival);
		break;
	case SPAN_ATTR_BOOL:
		o = a->ival ? put_lit(o, "true") : put_lit(o, "false");
		break;
	default:
		o = put_str(o, s->strbuf + off, len);
		break;
	}
	json_buf_commit(b, o);
}

/*
 * Duplicate attribute keys are found by a hash of each key's length and last 8 bytes (keys
 * share prefixes: "http.request."), so a key is compared with the earlier ones only when its
 * bit in a 64-bit filter is already set: a strcmp of every pair was a visible share of the
 * agent's time.
 */
static uint64_t key_hash(const char *key, size_t len)
{
	uint64_t tail = 0;

	memcpy(&tail, len >= sizeof(tail) ? key + len - sizeof(tail) : key,
	       len >= sizeof(tail) ? sizeof(tail) : len);
	return (tail ^ len) * 0x9e3779b97f4a7c15ull; /* 2^64 / golden ratio: mixes into the top */
}

static bool attr_key_seen_before(const struct span *s, unsigned idx, const size_t *klen,
				 const uint64_t *hash)
{
	const char *key = s->attrs[idx].key;

	for (unsigned i = 0; i < idx; i++) {
		const char *prev = s->attrs[i].key;

		if (prev == key)
			return true;
		if (prev && hash[i] == hash[idx] && klen[i] == klen[idx] &&
		    memcmp(prev, key, klen[idx]) == 0)
			return true;
	}
	return false;
}

static void json_put_attributes(struct json_buf *b, const struct span *s)
{
	unsigned n = s->nattrs < SPAN_MAX_ATTRS ? s->nattrs : SPAN_MAX_ATTRS;
	size_t klen[SPAN_MAX_ATTRS];
	uint64_t hash[SPAN_MAX_ATTRS];
	uint64_t filter = 0; /* bit (hash >> 58) set for each key seen */
	bool first = true;
	char *o;

	o = json_buf_reserve(b, 1);
	if (!o)
		return;
	*o++ = '{';
	json_buf_commit(b, o);
	for (unsigned i = 0; i < n; i++) {
		const char *key = s->attrs[i].key;
		uint64_t bit;

		if (!key)
			continue;
		klen[i] = strlen(key);
		hash[i] = key_hash(key, klen[i]);
		bit = 1ull << (hash[i] >> 58);
		/* a key that appears twice keeps its first value, as span_find_attr() does */
		if ((filter & bit) && attr_key_seen_before(s, i, klen, hash))
			continue;
		filter |= bit;
		json_put_attr(b, s, &s->attrs[i], klen[i], first);
		first = false;
	}
	o = json_buf_reserve(b, 1);
	if (o) {
		*o++ = '}';
		json_buf_commit(b, o);
	}
}

static void json_put_links(struct json_buf *b, const struct span *s)
{
	unsigned n = s->nlinks < SPAN_MAX_LINKS ? s->nlinks : SPAN_MAX_LINKS;
	char *o;

	for (unsigned i = 0; i < n; i++) {
		const struct span_link *l = &s->links[i];

		o = json_buf_reserve(b, 96);
		if (!o)
			return;
		*o++ = i ? ',' : '[';
		o = put_lit(o, "{\"trace_id\":");
		o = put_hex(o, l->trace_id, sizeof(l->trace_id));
		o = put_lit(o, ",\"span_id\":");
		o = put_hex(o, l->span_id, sizeof(l->span_id));
		o = put_lit(o, ",\"reason\":");
		json_buf_commit(b, o);
		json_put_cstr(b, l->reason, SIZE_MAX);
		o = json_buf_reserve(b, 1);
		if (!o)
			return;
		*o++ = '}';
		json_buf_commit(b, o);
	}
	o = json_buf_reserve(b, 2);
	if (!o)
		return;
	if (!n)
		*o++ = '[';
	*o++ = ']';
	json_buf_commit(b, o);
}

/* One log line (--capture-logs) as an event object. */
static void json_put_event(struct json_buf *b, const struct span_events *e, unsigned i)
{
	const struct span_event *ev = &e->ev[i];
	const char *stream = span_log_iostream(ev->source);
	char *o = json_buf_reserve(b, 96);

	if (!o)
		return;
	*o++ = i ? ',' : '[';
	o = put_lit(o, "{\"time_unix_ns\":");
	o = text_put_u64(o, ev->time_unix_ns);
	o = put_lit(o, ",\"name\":\"log\",\"attributes\":{\"log.record.original\":");
	json_buf_commit(b, o);
	json_put_str(b, e->text + ev->off, ev->len);
	o = json_buf_reserve(b, 64);
	if (!o)
		return;
	if (stream) {
		o = put_lit(o, ",\"log.iostream\":");
		o = put_plain_str(o, stream);
	} else {
		o = put_lit(o, ",\"log.file.path\":");
		json_buf_commit(b, o);
		json_put_str(b, e->text + ev->path_off, ev->path_len);
		o = json_buf_reserve(b, 64);
		if (!o)
			return;
	}
	if (ev->truncated)
		o = put_lit(o, ",\"hoptrace.log.truncated\":true");
	json_buf_commit(b, put_lit(o, "}}"));
}

/* "events" and "dropped_events_count", when the span has log lines or lost some. */
static void json_put_events(struct json_buf *b, const struct span *s)
{
	unsigned n = s->events ? s->events->n : 0;
	char *o;

	if (!n && !s->dropped_events)
		return;
	o = json_buf_reserve(b, 16);
	if (!o)
		return;
	json_buf_commit(b, put_lit(o, ",\"events\":"));
	for (unsigned i = 0; i < n; i++)
		json_put_event(b, s->events, i);
	o = json_buf_reserve(b, 64);
	if (!o)
		return;
	if (!n)
		*o++ = '[';
	*o++ = ']';
	if (s->dropped_events) {
		o = put_lit(o, ",\"dropped_events_count\":");
		o = text_put_u64(o, s->dropped_events);
	}
	json_buf_commit(b, o);
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
	if (resource_k8s(r, key))
		return true; /* the API server's word over the process's */
	for (unsigned i = 0; i < extra_idx; i++)
		if (r->extra[i].key && strcmp(key, r->extra[i].key) == 0)
			return true;
	return false;
}

/* `,"key":"value"` (the comma unless first); clears *first. */
static void json_put_member(struct json_buf *b, const char *key, const char *value, bool *first)
{
	size_t klen = strlen(key), vlen = strlen(value);
	size_t kroom = json_str_room(klen), vroom = json_str_room(vlen);
	char *o = json_buf_reserve(b, kroom > SIZE_MAX - 2 - vroom ? SIZE_MAX : kroom + vroom + 2);

	if (!o)
		return;
	if (!*first)
		*o++ = ',';
	*first = false;
	o = put_str(o, key, klen);
	*o++ = ':';
	json_buf_commit(b, put_str(o, value, vlen));
}

static void json_put_resource(struct json_buf *b, const struct resource *r)
{
	bool first = true;
	unsigned nextra;
	char *o;

	o = json_buf_reserve(b, 2);
	if (!o)
		return;
	*o++ = '{';
	if (!r) {
		*o++ = '}';
		json_buf_commit(b, o);
		return;
	}
	json_buf_commit(b, o);
	for (size_t i = 0; i < N_RESOURCE_FIELDS; i++)
		if (resource_field(r, i))
			json_put_member(b, resource_fields[i].key, resource_field(r, i), &first);
	for (unsigned i = 0; i < r->nk8s && i < RESOURCE_MAX_K8S; i++)
		json_put_member(b, r->k8s[i].key, r->k8s[i].value, &first);
	nextra = r->nextra < RESOURCE_MAX_EXTRA ? r->nextra : RESOURCE_MAX_EXTRA;
	for (unsigned i = 0; i < nextra; i++) {
		if (!r->extra[i].key || resource_key_written(r, i))
			continue;
		json_put_member(b, r->extra[i].key, r->extra[i].value ? r->extra[i].value : "",
				&first);
	}
	o = json_buf_reserve(b, 1);
	if (o) {
		*o++ = '}';
		json_buf_commit(b, o);
	}
}

static const char *service_name_of(const struct span *s)
{
	if (s->resource && s->resource->service_name && s->resource->service_name[0])
		return s->resource->service_name;
	return "unknown_service";
}

/* Bytes around the strings of json_put_span's first part: keys, ids and numbers. */
#define JSON_SPAN_HEAD_MAX 512

static void json_put_span(struct json_buf *b, const struct span *s)
{
	uint64_t duration =
	    s->end_unix_ns >= s->start_unix_ns ? s->end_unix_ns - s->start_unix_ns : 0;
	size_t name_len = strnlen(s->name, sizeof(s->name));
	size_t msg_len = strnlen(s->status_message, sizeof(s->status_message));
	size_t ts_len = strnlen(s->tracestate, sizeof(s->tracestate));
	const char *service = service_name_of(s);
	char *o;

	o = json_buf_reserve(b,
			     JSON_SPAN_HEAD_MAX + json_str_room(name_len) + json_str_room(msg_len));
	if (!o)
		return;
	o = put_lit(o, "{\"trace_id\":");
	o = put_hex(o, s->trace_id, sizeof(s->trace_id));
	o = put_lit(o, ",\"span_id\":");
	o = put_hex(o, s->span_id, sizeof(s->span_id));
	o = put_lit(o, ",\"parent_span_id\":");
	if (bytes_are_zero(s->parent_span_id, sizeof(s->parent_span_id)))
		o = put_lit(o, "\"\"");
	else
		o = put_hex(o, s->parent_span_id, sizeof(s->parent_span_id));
	o = put_lit(o, ",\"name\":");
	o = put_str(o, s->name, name_len);
	o = put_lit(o, ",\"kind\":");
	o = put_plain_str(o, kind_name(s->kind));
	o = put_lit(o, ",\"start_unix_ns\":");
	o = text_put_u64(o, s->start_unix_ns);
	o = put_lit(o, ",\"end_unix_ns\":");
	o = text_put_u64(o, s->end_unix_ns);
	o = put_lit(o, ",\"duration_ns\":");
	o = text_put_u64(o, duration);
	o = put_lit(o, ",\"status\":");
	o = put_plain_str(o, status_name(s->status));
	o = put_lit(o, ",\"status_message\":");
	o = put_str(o, s->status_message, msg_len);
	o = put_lit(o, ",\"service.name\":");
	json_buf_commit(b, o);
	json_put_str(b, service, strlen(service));

	o = json_buf_reserve(b, JSON_SPAN_HEAD_MAX + json_str_room(ts_len));
	if (!o)
		return;
	o = put_lit(o, ",\"pid\":");
	o = text_put_u64(o, s->pid);
	o = put_lit(o, ",\"tid\":");
	o = text_put_u64(o, s->tid);
	o = put_lit(o, ",\"trace_flags\":");
	o = text_put_u64(o, s->trace_flags);
	o = put_lit(o, ",\"tracestate\":");
	o = put_str(o, s->tracestate, ts_len);
	o = put_lit(o, ",\"attributes\":");
	json_buf_commit(b, o);
	json_put_attributes(b, s);

	o = json_buf_reserve(b, 16);
	if (!o)
		return;
	json_buf_commit(b, put_lit(o, ",\"links\":"));
	json_put_links(b, s);
	json_put_events(b, s);

	o = json_buf_reserve(b, 16);
	if (!o)
		return;
	json_buf_commit(b, put_lit(o, ",\"resource\":"));
	json_put_resource(b, s->resource);

	o = json_buf_reserve(b, 2);
	if (o)
		json_buf_commit(b, put_lit(o, "}\n"));
}

size_t sink_json_render(const struct span *s, char **buf, size_t *cap)
{
	struct json_buf b = {.data = *buf, .cap = *buf ? *cap : 0};

	json_put_span(&b, s);
	*buf = b.data;
	*cap = b.cap;
	if (b.nomem || b.len < 2)
		return 0;
	return b.len - 1; /* without the '\n' */
}

/* Hand the buffered spans to stdio. A failed write leaves the stream's error flag set, for
 * json_flush_now to count. */
static void json_drain(struct json_sink *js)
{
	struct json_buf *b = &js->buf;

	if (b->len)
		fwrite(b->data, 1, b->len, js->out);
	b->len = 0;
	if (b->cap > JSON_BUF_KEEP) {
		/* grown by a huge span (a process's OTEL_RESOURCE_ATTRIBUTES): give it back */
		free(b->data);
		b->data = NULL;
		b->cap = 0;
	}
}

/* Spans are flushed on the loop's 5 ms tick, not per line: a write(2) per span was a third
 * of the agent's time under load, and a pipe reader still sees each span within 5 ms. A
 * failed flush loses the spans since the previous one: they are counted as such. */
static void json_flush_now(struct json_sink *js)
{
	if (!js->unflushed)
		return;
	json_drain(js);
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
	size_t start = js->buf.len;

	if (!s)
		return;
	json_put_span(&js->buf, s);
	span_free(s);
	if (js->buf.nomem) {
		/* no memory for the line: the span is lost like one whose write failed */
		js->buf.len = start;
		js->buf.nomem = false;
		js->write_errors++;
		return;
	}
	js->spans_written++;
	js->unflushed++;
	if (js->buf.len >= JSON_FLUSH_AT)
		json_drain(js);
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
	struct json_sink *js = to_json_sink(sk);

	/* spans emitted without a flush since (a shutdown on an error path) still reach the
	 * stream, as they would if each had been written to stdio directly */
	json_drain(js);
	free(js->buf.data);
	free(js);
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
