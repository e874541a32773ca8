// SPDX-License-Identifier: BSD-2-Clause
/*
 * hoptrace-collect: a small OTLP/HTTP trace receiver. Takes POST /v1/traces
 * (application/x-protobuf, gzip or not) from hoptrace or any OpenTelemetry SDK and writes
 * every span as one JSON line in the agent's JSON span schema (see "JSON output" below).
 * Single-threaded: poll() over plain sockets, HTTP/1.1 keep-alive, Content-Length or
 * chunked bodies. Malformed requests get a 4xx and the server keeps going. Fault options
 * make it a test double for export retries; --dump keeps the raw requests for other decoders.
 * --count-only makes it a light sink for benchmarks: requests are checked as strictly, but
 * their spans are only counted by kind (see write_summary() for the file it keeps).
 */
#include <argp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hoptrace-collect.h"
#include "export/otlp_encode.h"
#include "export/otlp_gzip.h"
#include "log.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Request;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope Scope;

/*
 * What one client, or all of them, may make this receiver hold (it may listen on 0.0.0.0).
 * When every slot is taken, a new connection evicts the one that has waited longest (idle,
 * or with a request still arriving): a client that opens MAX_CONNS connections and holds
 * them blocks no one.
 */
#define MAX_CONNS 128
/* a request body, on the wire and again after gunzip: the agent's batches are far smaller */
#define DEFAULT_MAX_BODY (8u << 20)
/* what protobuf-c may allocate to unpack one request (see struct unpack_budget) */
#define DEFAULT_MAX_UNPACK (64u << 20)
/* input buffered over all connections together */
#define DEFAULT_MAX_BUFFERED (64u << 20)
/* a kept-alive connection with no request in progress is closed after this */
#define DEFAULT_IDLE_TIMEOUT_S 60
/* a request (head and body) must arrive within this of its first byte, else 408 */
#define DEFAULT_REQUEST_TIMEOUT_S 30
/* a connection answered with "close" may take this long to stop sending (see conn_linger) */
#define LINGER_MS 2000
/* the link attribute hoptrace puts a link's reason in (otlp_encode.h) */
#define LINK_REASON OTLP_LINK_REASON_KEY
#define STR_(x) #x
#define STR(x) STR_(x)
#define MAX_HEADER (64u << 10)
#define IO_CHUNK 65536
/* --count-only rewrites its file this often (ms), so that a crash loses little */
#define SUMMARY_MS 1000

static struct env {
	const char *listen;
	int port;
	const char *output;
	const char *dump_dir;
	const char *count_file;
	int fail_status;
	long fail_first;
	int retry_after;
	int delay_ms;
	size_t max_body;
	size_t max_unpack;
	size_t max_buffered;
	uint64_t idle_timeout_ms;
	uint64_t request_timeout_ms;
	bool quiet;
} env = {
    .listen = "127.0.0.1",
    .port = 4318,
    .retry_after = -1,
    .max_body = DEFAULT_MAX_BODY,
    .max_unpack = DEFAULT_MAX_UNPACK,
    .max_buffered = DEFAULT_MAX_BUFFERED,
    .idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_S * 1000,
    .request_timeout_ms = DEFAULT_REQUEST_TIMEOUT_S * 1000,
};

static struct counters {
	uint64_t connections;
	uint64_t requests;
	uint64_t spans;
	uint64_t bad_requests;
	uint64_t faults;
	uint64_t accepted; /* requests whose spans were written (or counted) */
	uint64_t dump_errors;
	uint64_t kind_server; /* --count-only: spans by kind */
	uint64_t kind_client;
	uint64_t kind_other;
	uint64_t summary_errors;
	uint64_t timeouts;    /* 408: a request that did not arrive in time; or a slow reader */
	uint64_t idle_closed; /* kept-alive connections closed for idling */
	uint64_t evicted;     /* connections closed to make room for a new one */
	uint64_t too_large;   /* 413: body, gunzipped body or unpacked request too large */
	uint64_t busy;	      /* 503: the buffers of all connections together were full */
} cnt;

static volatile sig_atomic_t exiting;
static FILE *out;

/* ---- command line ---------------------------------------------------------------------- */

const char *argp_program_version = "hoptrace-collect " HOPTRACE_VERSION;
static const char doc[] =
    "Receive OTLP/HTTP traces and print each span as a JSON line.\n"
    "\n"
    "EXAMPLES:\n"
    "  hoptrace-collect                        # listen on 127.0.0.1:4318, spans to stdout\n"
    "  hoptrace-collect --listen 0.0.0.0 -o spans.jsonl\n"
    "  hoptrace-collect --port 0               # any free port; the chosen one is logged\n"
    "  hoptrace-collect --fail-first 3 --retry-after 1   # 503 three times, then accept\n"
    "  hoptrace-collect --fail-status 400      # reject everything (permanent failure)\n"
    "  hoptrace-collect -q --count-only counts.json   # only count spans, by kind";

enum {
	OPT_FAIL_STATUS = 0x100,
	OPT_FAIL_FIRST,
	OPT_RETRY_AFTER,
	OPT_DELAY_MS,
	OPT_MAX_BODY,
	OPT_MAX_UNPACK,
	OPT_MAX_BUFFERED,
	OPT_IDLE_TIMEOUT,
	OPT_REQUEST_TIMEOUT,
	OPT_DUMP,
	OPT_COUNT_ONLY,
};

static const struct argp_option opts[] = {
    {"port", 'p', "PORT", 0, "TCP port (default 4318; 0 picks a free one)"},
    {"listen", 'l', "ADDR", 0, "address to listen on (default 127.0.0.1)"},
    {"output", 'o', "FILE", 0, "write JSON lines to FILE instead of stdout"},
    {"quiet", 'q', NULL, 0, "log only errors"},
    {"fail-status", OPT_FAIL_STATUS, "CODE", 0,
     "answer requests with HTTP status CODE (all of them, or the first N with --fail-first)"},
    {"fail-first", OPT_FAIL_FIRST, "N", 0,
     "fail only the first N requests (with --fail-status, default 503)"},
    {"retry-after", OPT_RETRY_AFTER, "S", 0, "add Retry-After: S to failure answers"},
    {"delay-ms", OPT_DELAY_MS, "MS", 0, "answer every request MS milliseconds late"},
    {"max-body", OPT_MAX_BODY, "BYTES", 0,
     "largest request body, on the wire and after gunzip (default 8 MiB; 413 beyond)"},
    {"max-unpack", OPT_MAX_UNPACK, "BYTES", 0,
     "most memory one request may take once decoded (default 64 MiB; 413 beyond)"},
    {"max-buffered", OPT_MAX_BUFFERED, "BYTES", 0,
     "most input held for all connections together (default 64 MiB; 503 beyond)"},
    {"idle-timeout", OPT_IDLE_TIMEOUT, "S", 0,
     "close a kept-alive connection idle this many seconds (default 60)"},
    {"request-timeout", OPT_REQUEST_TIMEOUT, "S", 0,
     "answer 408 to a request not received whole this many seconds after its first byte, "
     "and close a connection that does not read its answer for as long (default 30)"},
    {"dump", OPT_DUMP, "DIR", 0,
     "also write each accepted request body (gunzipped: an ExportTraceServiceRequest) to "
     "DIR/request-N.bin, N counting from 1"},
    {"count-only", OPT_COUNT_ONLY, "FILE", 0,
     "check and count spans by kind instead of writing them: FILE gets the counts as one "
     "JSON object, rewritten every second and at exit (for benchmarks: far less CPU)"},
    {},
};

static long parse_num(const char *arg, long min, long max, struct argp_state *state)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max)
		argp_error(state, "'%s' is not a number from %ld to %ld", arg, min, max);
	return v;
}

/* Seconds, with a fraction (tests use 0.5), as milliseconds. */
static uint64_t parse_ms(const char *arg, struct argp_state *state)
{
	char *end;
	double s;

	errno = 0;
	s = strtod(arg, &end);
	if (errno || end == arg || *end || !(s >= 0.001 && s <= 86400))
		argp_error(state, "'%s' is not a number of seconds from 0.001 to 86400", arg);
	return (uint64_t)(s * 1000 + 0.5);
}

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	switch (key) {
	case 'p':
		env.port = (int)parse_num(arg, 0, 65535, state);
		break;
	case 'l':
		env.listen = arg;
		break;
	case 'o':
		env.output = arg;
		break;
	case 'q':
		env.quiet = true;
		break;
	case OPT_FAIL_STATUS:
		env.fail_status = (int)parse_num(arg, 100, 599, state);
		break;
	case OPT_FAIL_FIRST:
		env.fail_first = parse_num(arg, 0, 1L << 40, state);
		break;
	case OPT_RETRY_AFTER:
		env.retry_after = (int)parse_num(arg, 0, 86400, state);
		break;
	case OPT_DELAY_MS:
		env.delay_ms = (int)parse_num(arg, 0, 3600 * 1000, state);
		break;
	case OPT_MAX_BODY:
		env.max_body = (size_t)parse_num(arg, 1, 1L << 32, state);
		break;
	case OPT_MAX_UNPACK:
		env.max_unpack = (size_t)parse_num(arg, 1, 1L << 34, state);
		break;
	case OPT_MAX_BUFFERED:
		env.max_buffered = (size_t)parse_num(arg, 1, 1L << 34, state);
		break;
	case OPT_IDLE_TIMEOUT:
		env.idle_timeout_ms = parse_ms(arg, state);
		break;
	case OPT_REQUEST_TIMEOUT:
		env.request_timeout_ms = parse_ms(arg, state);
		break;
	case OPT_DUMP:
		env.dump_dir = arg;
		break;
	case OPT_COUNT_ONLY:
		env.count_file = arg;
		break;
	case ARGP_KEY_END:
		if (env.count_file && env.output)
			argp_error(state, "--count-only writes no spans: leave out -o");
		/* a chunked body's buffer doubles: it may take twice --max-body */
		if (env.max_buffered / 2 < env.max_body + (1u << 20))
			argp_error(
			    state,
			    "--max-buffered must be at least twice --max-body and 2 MiB more, "
			    "or no request that large could be received");
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

/* ---- JSON output ----------------------------------------------------------------------- */

/*
 * Spans are written in the agent's JSON span schema (agent/sink_json.c, README "JSON
 * output"): the same keys in the same order, with the same string escaping, so that a line
 * from `hoptrace -o json` and the line this receiver writes for the same span compare
 * equal key by key. How OTLP maps onto it:
 *
 *   parent_span_id  "" when the span has none
 *   kind, status    the OTLP enum names without their prefix ("SERVER", "ERROR"; "INTERNAL",
 *                   "PRODUCER", "CONSUMER" and "UNSPECIFIED" for what SDKs may send)
 *   status_message  Status.message, "" when none
 *   service.name    the resource attribute service.name, else "unknown_service"
 *   pid             the resource attribute process.pid (omitted when absent or not an int)
 *   tid             the span attribute thread.id (omitted when absent or not an int)
 *   trace_flags     the low 8 bits of Span.flags (W3C trace-flags)
 *   attributes      every span attribute, typed: string, int, bool; doubles as numbers
 *                   (NaN and infinities as null), bytes as lowercase hex, arrays and kvlists
 *                   as JSON arrays and objects
 *   links           [{trace_id, span_id, reason}], reason being the link attribute
 *                   hoptrace.link.reason ("" when absent)
 *   resource        every resource attribute, typed like attributes: besides what the
 *                   agent's own output lists, service.name, process.pid, host.name,
 *                   os.type, telemetry.sdk.* and whatever the sender adds
 *
 * Fields the agent's output does not have, all after "resource":
 *   "parent_is_remote": bool   Span.flags bits 8-9, only when the sender says
 *   "scope": {"name", "version"}   the instrumentation scope (also "attributes" when any)
 *   "events": [{"name", "time_unix_ns", "attributes"}]   only when the span has events
 *   "dropped_attributes_count", "dropped_events_count", "dropped_links_count"   when not 0
 * and in a link, "tracestate" and "attributes" (those besides hoptrace.link.reason) when
 * not empty. A key that repeats within one attribute list keeps its first value, as in the
 * agent's output, so no object has duplicate keys.
 */

/* AnyValue arrays and kvlists nested deeper than this make the request a 400. */
#define MAX_VALUE_DEPTH 32

/* Write len bytes of untrusted text as a JSON string, escaped as agent/sink_json.c does. */
static void json_str(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	fputc('"', f);
	while (p < end) {
		size_t n = otlp_utf8_seq(p, (size_t)(end - p));

		if (n == 0) {
			fputs("\\ufffd", f); /* not UTF-8: keep the line valid JSON */
			p++;
			continue;
		}
		if (n == 2 && p[0] == 0xc2 && p[1] < 0xa0) {
			/* C1 control: valid JSON as is, but a terminal would obey it */
			fprintf(f, "\\u%04x", p[1]);
		} else if (n > 1) {
			fwrite(p, 1, n, f);
		} else {
			switch (*p) {
			case '"':
				fputs("\\\"", f);
				break;
			case '\\':
				fputs("\\\\", f);
				break;
			case '\n':
				fputs("\\n", f);
				break;
			case '\r':
				fputs("\\r", f);
				break;
			case '\t':
				fputs("\\t", f);
				break;
			case '\b':
				fputs("\\b", f);
				break;
			case '\f':
				fputs("\\f", f);
				break;
			default:
				if (*p < 0x20 || *p == 0x7f)
					fprintf(f, "\\u%04x", *p);
				else
					fputc(*p, f);
			}
		}
		p += n;
	}
	fputc('"', f);
}

static void json_cstr(FILE *f, const char *s)
{
	json_str(f, s ? s : "", s ? strlen(s) : 0);
}

/* An id as lowercase hex; "" when absent (validate_ids vouched for the length). */
static void json_hex(FILE *f, const ProtobufCBinaryData *b)
{
	static const char digits[] = "0123456789abcdef";

	fputc('"', f);
	for (size_t i = 0; i < b->len; i++) {
		fputc(digits[b->data[i] >> 4], f);
		fputc(digits[b->data[i] & 0xf], f);
	}
	fputc('"', f);
}

/* Writes `,"key":` (the comma unless first) and clears *first. */
static void json_key(FILE *f, const char *key, bool *first)
{
	if (!*first)
		fputc(',', f);
	*first = false;
	json_cstr(f, key);
	fputc(':', f);
}

static void json_kvs(FILE *f, KeyValue **kv, size_t n, const char *skip, int depth);

static void json_any(FILE *f, const AnyValue *v, int depth)
{
	if (!v || depth > MAX_VALUE_DEPTH) {
		fputs("null", f);
		return;
	}
	switch (v->value_case) {
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
		json_cstr(f, v->string_value);
		break;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
		fputs(v->bool_value ? "true" : "false", f);
		break;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
		fprintf(f, "%" PRId64, v->int_value);
		break;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
		if (!isfinite(v->double_value))
			fputs("null", f); /* NaN and infinities are not JSON */
		else
			fprintf(f, "%.17g", v->double_value);
		break;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
		json_hex(f, &v->bytes_value);
		break;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
		fputc('[', f);
		for (size_t i = 0; v->array_value && i < v->array_value->n_values; i++) {
			if (i)
				fputc(',', f);
			json_any(f, v->array_value->values[i], depth + 1);
		}
		fputc(']', f);
		break;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
		if (v->kvlist_value)
			json_kvs(f, v->kvlist_value->values, v->kvlist_value->n_values, NULL,
				 depth + 1);
		else
			fputs("{}", f);
		break;
	default:
		fputs("null", f); /* AnyValue with no value set: OTLP's empty value */
	}
}

static bool key_seen_before(KeyValue **kv, size_t idx)
{
	for (size_t i = 0; i < idx; i++)
		if (!strcmp(kv[i]->key, kv[idx]->key))
			return true;
	return false;
}

/* Order of indices into a KeyValue list: by key, then by position. */
static int cmp_key_index(const void *a, const void *b, void *arg)
{
	KeyValue **kv = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = strcmp(kv[i]->key, kv[j]->key);

	return c ? c : (i > j) - (i < j);
}

/*
 * For long lists, which key repeats an earlier one: sorting is O(n log n) where asking
 * key_seen_before of each is O(n^2), minutes for the 10^6 attributes a 64 MiB request can
 * hold. NULL (use key_seen_before) for short lists or without memory.
 */
static bool *repeated_keys(KeyValue **kv, size_t n)
{
	size_t *idx;
	bool *rep;

	if (n <= 64)
		return NULL;
	idx = malloc(n * sizeof(*idx));
	rep = calloc(n, sizeof(*rep));
	if (!idx || !rep) {
		free(idx);
		free(rep);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof(*idx), cmp_key_index, kv);
	for (size_t i = 1; i < n; i++)
		rep[idx[i]] = !strcmp(kv[idx[i]]->key, kv[idx[i - 1]]->key);
	free(idx);
	return rep;
}

/* A JSON object of the key/values, without the key skip (NULL: none) and repeated keys. */
static void json_kvs(FILE *f, KeyValue **kv, size_t n, const char *skip, int depth)
{
	bool *rep = repeated_keys(kv, n);
	bool first = true;

	fputc('{', f);
	for (size_t i = 0; i < n; i++) {
		if ((skip && !strcmp(kv[i]->key, skip)) || (rep ? rep[i] : key_seen_before(kv, i)))
			continue;
		json_key(f, kv[i]->key, &first);
		json_any(f, kv[i]->value, depth);
	}
	fputc('}', f);
	free(rep);
}

/* The value of the first attribute named key, NULL if none. */
static const AnyValue *find_attr(KeyValue **kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(kv[i]->key, key))
			return kv[i]->value;
	return NULL;
}

static bool any_is(const AnyValue *v, int value_case)
{
	return v && (int)v->value_case == value_case;
}

#define IS_STRING OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
#define IS_INT OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE

static const char *kind_name(int kind)
{
	static const char *const names[] = {"UNSPECIFIED", "INTERNAL", "SERVER",
					    "CLIENT",	   "PRODUCER", "CONSUMER"};

	return kind >= 0 && kind < 6 ? names[kind] : "UNSPECIFIED";
}

static const char *status_name(int code)
{
	return code == 1 ? "OK" : code == 2 ? "ERROR" : "UNSET";
}

/* Span.flags bits 8 and 9 (SpanFlags in trace.proto). */
#define FLAG_HAS_IS_REMOTE 0x100u
#define FLAG_IS_REMOTE 0x200u

static void json_links(FILE *f, const Span *s)
{
	fputc('[', f);
	for (size_t i = 0; i < s->n_links; i++) {
		const Opentelemetry__Proto__Trace__V1__Span__Link *l = s->links[i];
		const AnyValue *reason = find_attr(l->attributes, l->n_attributes, LINK_REASON);
		size_t nother = 0;

		for (size_t j = 0; j < l->n_attributes; j++)
			nother += strcmp(l->attributes[j]->key, LINK_REASON) != 0;
		fputs(i ? ",{\"trace_id\":" : "{\"trace_id\":", f);
		json_hex(f, &l->trace_id);
		fputs(",\"span_id\":", f);
		json_hex(f, &l->span_id);
		fputs(",\"reason\":", f);
		json_cstr(f, any_is(reason, IS_STRING) ? reason->string_value : "");
		if (l->trace_state[0]) {
			fputs(",\"tracestate\":", f);
			json_cstr(f, l->trace_state);
		}
		if (nother) {
			fputs(",\"attributes\":", f);
			json_kvs(f, l->attributes, l->n_attributes, LINK_REASON, 0);
		}
		fputc('}', f);
	}
	fputc(']', f);
}

static void json_extras(FILE *f, const Span *s, const Scope *scope)
{
	if (s->flags & FLAG_HAS_IS_REMOTE)
		fprintf(f, ",\"parent_is_remote\":%s",
			s->flags & FLAG_IS_REMOTE ? "true" : "false");
	fputs(",\"scope\":{\"name\":", f);
	json_cstr(f, scope ? scope->name : "");
	fputs(",\"version\":", f);
	json_cstr(f, scope ? scope->version : "");
	if (scope && scope->n_attributes) {
		fputs(",\"attributes\":", f);
		json_kvs(f, scope->attributes, scope->n_attributes, NULL, 0);
	}
	fputc('}', f);
	if (s->n_events) {
		fputs(",\"events\":[", f);
		for (size_t i = 0; i < s->n_events; i++) {
			const Opentelemetry__Proto__Trace__V1__Span__Event *e = s->events[i];

			fputs(i ? ",{\"name\":" : "{\"name\":", f);
			json_cstr(f, e->name);
			fprintf(f,
				",\"time_unix_ns\":%" PRIu64 ",\"attributes\":", e->time_unix_nano);
			json_kvs(f, e->attributes, e->n_attributes, NULL, 0);
			fputc('}', f);
		}
		fputc(']', f);
	}
	if (s->dropped_attributes_count)
		fprintf(f, ",\"dropped_attributes_count\":%" PRIu32, s->dropped_attributes_count);
	if (s->dropped_events_count)
		fprintf(f, ",\"dropped_events_count\":%" PRIu32, s->dropped_events_count);
	if (s->dropped_links_count)
		fprintf(f, ",\"dropped_links_count\":%" PRIu32, s->dropped_links_count);
}

/* One span, one line. */
static void json_span(FILE *f, const Span *s, const Resource *res, const Scope *scope)
{
	KeyValue **rkv = res ? res->attributes : NULL;
	size_t nrkv = res ? res->n_attributes : 0;
	const AnyValue *svc = find_attr(rkv, nrkv, "service.name");
	const AnyValue *pid = find_attr(rkv, nrkv, "process.pid");
	const AnyValue *tid = find_attr(s->attributes, s->n_attributes, "thread.id");
	uint64_t duration = s->end_time_unix_nano >= s->start_time_unix_nano
				? s->end_time_unix_nano - s->start_time_unix_nano
				: 0;

	fputs("{\"trace_id\":", f);
	json_hex(f, &s->trace_id);
	fputs(",\"span_id\":", f);
	json_hex(f, &s->span_id);
	fputs(",\"parent_span_id\":", f);
	json_hex(f, &s->parent_span_id);
	fputs(",\"name\":", f);
	json_cstr(f, s->name);
	fprintf(f,
		",\"kind\":\"%s\",\"start_unix_ns\":%" PRIu64 ",\"end_unix_ns\":%" PRIu64
		",\"duration_ns\":%" PRIu64,
		kind_name(s->kind), s->start_time_unix_nano, s->end_time_unix_nano, duration);
	fprintf(f, ",\"status\":\"%s\",\"status_message\":",
		status_name(s->status ? s->status->code : 0));
	json_cstr(f, s->status ? s->status->message : "");
	fputs(",\"service.name\":", f);
	json_cstr(f, any_is(svc, IS_STRING) && svc->string_value[0] ? svc->string_value
								    : "unknown_service");
	if (any_is(pid, IS_INT))
		fprintf(f, ",\"pid\":%" PRId64, pid->int_value);
	if (any_is(tid, IS_INT))
		fprintf(f, ",\"tid\":%" PRId64, tid->int_value);
	fprintf(f, ",\"trace_flags\":%" PRIu32 ",\"tracestate\":", s->flags & 0xffu);
	json_cstr(f, s->trace_state);
	fputs(",\"attributes\":", f);
	json_kvs(f, s->attributes, s->n_attributes, NULL, 0);
	fputs(",\"links\":", f);
	json_links(f, s);
	fputs(",\"resource\":", f);
	json_kvs(f, rkv, nrkv, NULL, 0);
	json_extras(f, s, scope);
	fputs("}\n", f);
}

static size_t put_spans(FILE *f, const Request *req)
{
	size_t n = 0;

	for (size_t i = 0; i < req->n_resource_spans; i++) {
		const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[i];

		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[j];

			for (size_t k = 0; k < ss->n_spans; k++, n++)
				json_span(f, ss->spans[k], rs->resource, ss->scope);
		}
	}
	return n;
}

/*
 * A request's lines are built in memory and written with one fwrite on the unbuffered
 * output, one write(2): through a stdio buffer they went out in 4 KiB pieces that cut
 * lines, and a test reading the file while spans arrive parsed half a line. (A reader
 * must still take only lines that end in "\n": a read can see part of a write.)
 */
static size_t write_spans(const Request *req)
{
	char *text = NULL;
	size_t len = 0, n;
	FILE *mem = open_memstream(&text, &len);

	if (!mem) /* no memory: the spans still go out, in many writes */
		return put_spans(out, req);
	n = put_spans(mem, req);
	if (fclose(mem) == 0)
		fwrite(text, 1, len, out);
	else /* ran out of memory on the way */
		put_spans(out, req);
	free(text);
	return n;
}

/* ---- request validation ---------------------------------------------------------------- */

/*
 * protobuf-c unpacks nested messages recursively, without a depth limit: a few MB of AnyValue
 * arrays nested in one another overflow the stack. So before unpacking, walk the wire format
 * along the OTLP message types (the only recursive ones are AnyValue's arrays and kvlists)
 * and refuse what nests too deep. The walk also refuses a known field in a wire type its
 * type does not have, as protobuf-c does: that makes it the whole validation for
 * --count-only, which never unpacks (the walk then also checks ids and counts kinds).
 */
enum msg_type {
	M_NONE,
	M_REQUEST,
	M_RESOURCE_SPANS,
	M_RESOURCE,
	M_SCOPE_SPANS,
	M_SCOPE,
	M_SPAN,
	M_EVENT,
	M_LINK,
	M_STATUS,
	M_KEY_VALUE,
	M_ANY_VALUE,
	M_ARRAY,
	M_KVLIST,
	M_COUNT,
};

static const ProtobufCMessageDescriptor *const msg_descriptors[M_COUNT] = {
    [M_REQUEST] =
	&opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
    [M_RESOURCE_SPANS] = &opentelemetry__proto__trace__v1__resource_spans__descriptor,
    [M_RESOURCE] = &opentelemetry__proto__resource__v1__resource__descriptor,
    [M_SCOPE_SPANS] = &opentelemetry__proto__trace__v1__scope_spans__descriptor,
    [M_SCOPE] = &opentelemetry__proto__common__v1__instrumentation_scope__descriptor,
    [M_SPAN] = &opentelemetry__proto__trace__v1__span__descriptor,
    [M_EVENT] = &opentelemetry__proto__trace__v1__span__event__descriptor,
    [M_LINK] = &opentelemetry__proto__trace__v1__span__link__descriptor,
    [M_STATUS] = &opentelemetry__proto__trace__v1__status__descriptor,
    [M_KEY_VALUE] = &opentelemetry__proto__common__v1__key_value__descriptor,
    [M_ANY_VALUE] = &opentelemetry__proto__common__v1__any_value__descriptor,
    [M_ARRAY] = &opentelemetry__proto__common__v1__array_value__descriptor,
    [M_KVLIST] = &opentelemetry__proto__common__v1__key_value_list__descriptor,
};

/* The largest field number in these messages (Span.flags). */
#define MAX_FIELD 16

/* Field numbers the walk reads itself, the same in Span and Link (trace.proto). */
#define F_TRACE_ID 1
#define F_SPAN_ID 2
#define F_PARENT_SPAN_ID 4
#define F_KIND 6

struct field_spec {
	uint8_t wire_types; /* bit n: wire type n is valid; 0 for a number the schema lacks */
	uint8_t child;	    /* enum msg_type of a message field, else M_NONE */
};

/* schema[type][field number], filled from protobuf-c's descriptors by schema_init(). */
static struct field_spec schema[M_COUNT][MAX_FIELD + 1];

static unsigned wire_type_of(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 1;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return 2;
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return 5;
	default:
		return 0; /* the varint types: ints, bool, enum */
	}
}

static enum msg_type msg_type_of(const ProtobufCMessageDescriptor *d)
{
	for (int m = M_REQUEST; m < M_COUNT; m++)
		if (msg_descriptors[m] == d)
			return (enum msg_type)m;
	return M_NONE;
}

/*
 * Fill schema[] from the generated descriptors, so that it follows the .proto files.
 * -EINVAL if they have a field number above MAX_FIELD or a message type msg_descriptors
 * lacks: the tables here need updating.
 */
static int schema_init(void)
{
	for (int m = M_REQUEST; m < M_COUNT; m++) {
		const ProtobufCMessageDescriptor *d = msg_descriptors[m];

		for (unsigned i = 0; i < d->n_fields; i++) {
			const ProtobufCFieldDescriptor *f = &d->fields[i];
			unsigned wire = wire_type_of(f->type);
			struct field_spec *s;

			if (f->id > MAX_FIELD)
				return -EINVAL;
			s = &schema[m][f->id];
			s->wire_types = (uint8_t)(1u << wire);
			/* a repeated scalar may come packed (length-delimited) */
			if (f->label == PROTOBUF_C_LABEL_REPEATED && wire != 2)
				s->wire_types |= 1u << 2;
			if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
				s->child = (uint8_t)msg_type_of(f->descriptor);
				if (s->child == M_NONE)
					return -EINVAL;
			}
		}
	}
	return 0;
}

/* Spans of accepted requests by kind (--count-only). */
struct tally {
	uint64_t spans;
	uint64_t server;
	uint64_t client;
	uint64_t other;
};

/* tally NULL: check nesting and wire types only (protobuf-c does the rest) */
struct walk {
	struct tally *tally;
	const char *why; /* set with -EINVAL: what is wrong with the request */
};

/* An id field is absent or exactly n bytes: other lengths are invalid ids (OTLP spec). */
static bool id_len_ok(uint64_t len, uint64_t n)
{
	return len == 0 || len == n;
}

/*
 * Ids of valid lengths, as the OpenTelemetry Collector requires (it answers 400 otherwise).
 * A span without a trace or span id is not a span either. NULL if fine, else the problem.
 */
static const char *span_ids_problem(uint64_t trace_id, uint64_t span_id, uint64_t parent)
{
	if (trace_id != 16)
		return "a span's trace_id is not 16 bytes";
	if (span_id != 8)
		return "a span's span_id is not 8 bytes";
	if (!id_len_ok(parent, 8))
		return "a span's parent_span_id is neither empty nor 8 bytes";
	return NULL;
}

static const char *link_ids_problem(uint64_t trace_id, uint64_t span_id)
{
	if (trace_id != 16 || span_id != 8)
		return "a link's trace_id or span_id has a wrong length";
	return NULL;
}

/* Most tags and lengths are one byte: take those without the call. */
static inline bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	if (*p < end && **p < 0x80) {
		*v = *(*p)++;
		return true;
	}
	return otlp_read_varint(p, end, v);
}

/*
 * Walk one message of type `type` in [p, end). 0 if it is well-formed; -ELOOP if AnyValues
 * nest deeper than allowed; -EBADMSG if it is not protobuf or a known field has the wrong
 * wire type; with w->tally, -EINVAL (and w->why) for ids of wrong lengths, and every span
 * counted by kind. depth counts AnyValue levels; the walk recurses once per message level,
 * of which there are at most 2 * MAX_VALUE_DEPTH + 8.
 */
static int walk_message(const uint8_t *p, const uint8_t *end, enum msg_type type, int depth,
			struct walk *w)
{
	static const struct field_spec unknown;
	/* last value of each of the fields Span and Link checks read (protobuf: last one wins) */
	uint64_t len[F_PARENT_SPAN_ID + 1] = {0};
	uint32_t kind = 0;

	if (type == M_ANY_VALUE && ++depth > MAX_VALUE_DEPTH)
		return -ELOOP;
	while (p < end) {
		const struct field_spec *fs;
		uint64_t tag, field, v;
		int err;

		/* field 0 is invalid; protobuf-c reads at most 5 bytes of tag */
		if (!read_varint(&p, end, &tag) || tag < 8 || tag > UINT32_MAX)
			return -EBADMSG;
		field = tag >> 3;
		fs = field <= MAX_FIELD ? &schema[type][field] : &unknown;
		if (fs->wire_types && !(fs->wire_types & (1u << (tag & 7))))
			return -EBADMSG;
		switch (tag & 7) {
		case 0:
			if (!read_varint(&p, end, &v))
				return -EBADMSG;
			if (field == F_KIND)
				kind = (uint32_t)v; /* an enum is an int32: its low 32 bits */
			break;
		case 1:
			if (end - p < 8)
				return -EBADMSG;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				return -EBADMSG;
			p += 4;
			break;
		case 2:
			if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return -EBADMSG;
			if (fs->child != M_NONE) {
				err = walk_message(p, p + v, (enum msg_type)fs->child, depth, w);
				if (err)
					return err;
			} else if (field <= F_PARENT_SPAN_ID) {
				len[field] = v;
			}
			p += v;
			break;
		default:
			return -EBADMSG; /* groups (3, 4) are not proto3 */
		}
	}
	if (!w->tally || (type != M_SPAN && type != M_LINK))
		return 0;
	w->why = type == M_LINK
		     ? link_ids_problem(len[F_TRACE_ID], len[F_SPAN_ID])
		     : span_ids_problem(len[F_TRACE_ID], len[F_SPAN_ID], len[F_PARENT_SPAN_ID]);
	if (w->why)
		return -EINVAL;
	if (type == M_LINK)
		return 0;
	w->tally->spans++;
	if (kind == OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER)
		w->tally->server++;
	else if (kind == OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT)
		w->tally->client++;
	else
		w->tally->other++;
	return 0;
}

/* The first problem with the ids of an unpacked request (span_ids_problem), NULL if none. */
static const char *invalid_ids(const Request *req)
{
	for (size_t i = 0; i < req->n_resource_spans; i++) {
		const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[i];

		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[j];

			for (size_t k = 0; k < ss->n_spans; k++) {
				const Span *s = ss->spans[k];
				const char *why = span_ids_problem(s->trace_id.len, s->span_id.len,
								   s->parent_span_id.len);

				for (size_t l = 0; !why && l < s->n_links; l++)
					why = link_ids_problem(s->links[l]->trace_id.len,
							       s->links[l]->span_id.len);
				if (why)
					return why;
			}
		}
	}
	return NULL;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

struct request {
	char method[16];
	char target[256];
	bool http10;
	bool keep_alive;
	bool chunked;
	bool expect_continue;
	long long content_length; /* -1: none */
	char content_type[128];
	char content_encoding[128];
	size_t header_len;
};

/*
 * Where a connection is in its request. Input is parsed once: each step consumes what it
 * has read, so a body that arrives in many small pieces (or chunks) is not parsed again on
 * every recv.
 */
enum conn_phase {
	PH_HEAD,       /* request line and headers */
	PH_BODY,       /* a Content-Length body */
	PH_CHUNK_SIZE, /* a chunk-size line (RFC 9112 7.1) */
	PH_CHUNK_DATA, /* a chunk's data */
	PH_CHUNK_CRLF, /* the CRLF after a chunk's data */
	PH_TRAILER,    /* trailer lines after the last chunk, up to an empty line */
};

struct conn {
	int fd;
	uint8_t *in; /* received bytes not consumed yet */
	size_t in_len;
	size_t in_cap;
	size_t scanned; /* PH_HEAD: bytes of in already searched for the end of the head */
	enum conn_phase phase;
	struct request rq;	/* past PH_HEAD: the request's head */
	struct otlp_buf body;	/* a chunked body, decoded so far */
	uint64_t chunk_left;	/* PH_CHUNK_DATA: bytes of the chunk still to come */
	size_t trailer_len;	/* PH_TRAILER: bytes of trailer lines so far */
	uint64_t request_start; /* ms: first byte of the request in progress; 0 if none */
	uint64_t last_active;	/* ms: accepted, or an answer written */
	char *outbuf;
	size_t out_len;
	size_t out_off;
	uint64_t respond_at; /* ms; the answer waits in outbuf until then */
	bool close_after;    /* close once the answer is written */
	bool lingering;	     /* answered and shut down for writing: reading what is left */
	bool continue_due;   /* a 100 Continue is to be sent */
	bool sent_continue;
};

struct answer {
	int status;
	const char *content_type;
	const uint8_t *body;
	size_t body_len;
	bool close;
};

static struct conn conns[MAX_CONNS];
static uint64_t requests_seen;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 413:
		return "Payload Too Large";
	case 415:
		return "Unsupported Media Type";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Status";
	}
}

static void queue_answer(struct conn *c, const struct answer *a, bool fault)
{
	char head[512], retry[48] = "";
	int n;

	if (fault && env.retry_after >= 0)
		snprintf(retry, sizeof(retry), "Retry-After: %d\r\n", env.retry_after);
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
		     a->status, reason(a->status), a->content_type, a->body_len, retry,
		     a->close ? "Connection: close\r\n" : "");
	free(c->outbuf);
	c->outbuf = malloc((size_t)n + a->body_len);
	if (!c->outbuf) {
		c->close_after = true;
		c->out_len = c->out_off = 0;
		return;
	}
	memcpy(c->outbuf, head, (size_t)n);
	if (a->body_len)
		memcpy(c->outbuf + n, a->body, a->body_len);
	c->out_len = (size_t)n + a->body_len;
	c->out_off = 0;
	c->close_after = a->close;
	c->respond_at = now_ms() + (uint64_t)env.delay_ms;
}

/* An OTLP/HTTP error body: google.rpc.Status { code = 1; message = 2 } as protobuf. */
static void answer_error(struct conn *c, int status, int rpc_code, const char *msg, bool close,
			 bool fault)
{
	uint8_t body[300];
	size_t len = strlen(msg), n = 0;
	struct answer a = {
	    .status = status, .content_type = "application/x-protobuf", .close = close};

	if (len > 250)
		len = 250;
	body[n++] = 0x08; /* field 1, varint */
	body[n++] = (uint8_t)rpc_code;
	body[n++] = 0x12; /* field 2, length-delimited */
	if (len >= 128) {
		body[n++] = (uint8_t)(len | 0x80);
		body[n++] = (uint8_t)(len >> 7);
	} else {
		body[n++] = (uint8_t)len;
	}
	memcpy(body + n, msg, len);
	a.body = body;
	a.body_len = n + len;
	if (!fault)
		cnt.bad_requests++;
	if (!env.quiet || !fault)
		log_msg(fault ? LOG_INFO : LOG_WARN, "answered %d: %s", status, msg);
	queue_answer(c, &a, fault);
}

/*
 * Find the end of the header block; 0 while incomplete. *scanned: how far earlier calls
 * looked, so that a head sent a byte at a time is searched once, not once per byte.
 */
static size_t header_end(const uint8_t *b, size_t len, size_t *scanned)
{
	for (size_t i = *scanned > 3 ? *scanned : 3; i < len; i++)
		if (b[i] == '\n' && b[i - 1] == '\r' && b[i - 2] == '\n' && b[i - 3] == '\r')
			return i + 1;
	*scanned = len;
	return 0;
}

static void trim_copy(char *dst, size_t dstlen, const char *s, size_t len)
{
	while (len && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
		len--;
	if (len >= dstlen)
		len = dstlen - 1;
	memcpy(dst, s, len);
	dst[len] = '\0';
}

static int parse_head(const char *h, size_t len, struct request *rq)
{
	const char *line = h, *end = h + len, *eol;
	char version[16], value[128], first[512];

	memset(rq, 0, sizeof(*rq));
	rq->content_length = -1;
	rq->header_len = len;
	eol = memchr(line, '\n', (size_t)(end - line));
	/* the buffer is not NUL-terminated: scan a bounded copy of the request line */
	if (!eol || (size_t)(eol - line) >= sizeof(first))
		return -EBADMSG;
	memcpy(first, line, (size_t)(eol - line));
	first[eol - line] = '\0';
	if (sscanf(first, "%15s %255s %15s", rq->method, rq->target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7))
		return -EBADMSG;
	rq->http10 = !strcmp(version, "HTTP/1.0");
	rq->keep_alive = !rq->http10;
	for (line = eol + 1; line < end; line = eol + 1) {
		const char *colon;
		size_t nlen;

		eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol || eol - line <= 1)
			break;
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon)
			return -EBADMSG;
		nlen = (size_t)(colon - line);
		trim_copy(value, sizeof(value), colon + 1, (size_t)(eol - colon - 1));
#define IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(line, name, nlen))
		if (IS("content-length")) {
			char *e;

			errno = 0;
			rq->content_length = strtoll(value, &e, 10);
			if (errno || e == value || *e || rq->content_length < 0)
				return -EBADMSG;
		} else if (IS("transfer-encoding")) {
			rq->chunked = strcasestr(value, "chunked") != NULL;
		} else if (IS("content-type")) {
			snprintf(rq->content_type, sizeof(rq->content_type), "%s", value);
		} else if (IS("content-encoding")) {
			snprintf(rq->content_encoding, sizeof(rq->content_encoding), "%s", value);
		} else if (IS("connection")) {
			if (strcasestr(value, "close"))
				rq->keep_alive = false;
			else if (strcasestr(value, "keep-alive"))
				rq->keep_alive = true;
		} else if (IS("expect")) {
			rq->expect_continue = !strcasecmp(value, "100-continue");
		}
#undef IS
	}
	return 0;
}

/* --dump: the body as received (after gunzip), for decoders other than this one. */
static void dump_body(const uint8_t *body, size_t len)
{
	char path[4096];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "%s/request-%" PRIu64 ".bin", env.dump_dir, cnt.accepted);
	f = fopen(path, "w");
	ok = f && fwrite(body, 1, len, f) == len;
	if (f && fclose(f))
		ok = false;
	if (!ok && !cnt.dump_errors++)
		log_error("cannot write %s: %s (further dump errors are only counted)", path,
			  strerror(errno));
}

/*
 * --count-only: the counts as one JSON object, written to FILE.tmp and renamed over FILE so
 * that a reader never sees half of one. 0 or -errno.
 */
static int write_summary(void)
{
	char tmp[4096];
	FILE *f;
	int err = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", env.count_file) >= sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f,
		"{\"requests\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"bad_requests\":%" PRIu64
		",\"faults\":%" PRIu64 ",\"spans\":%" PRIu64 ",\"server\":%" PRIu64
		",\"client\":%" PRIu64 ",\"other\":%" PRIu64 ",\"timeouts\":%" PRIu64
		",\"idle_closed\":%" PRIu64 ",\"evicted\":%" PRIu64 ",\"too_large\":%" PRIu64
		",\"busy\":%" PRIu64 "}\n",
		cnt.requests, cnt.accepted, cnt.bad_requests, cnt.faults, cnt.spans,
		cnt.kind_server, cnt.kind_client, cnt.kind_other, cnt.timeouts, cnt.idle_closed,
		cnt.evicted, cnt.too_large, cnt.busy);
	if (ferror(f))
		err = -EIO;
	if (fclose(f) && !err)
		err = -errno;
	if (err)
		goto err_unlink;
	if (rename(tmp, env.count_file)) {
		err = -errno;
		goto err_unlink;
	}
	return 0;

err_unlink:
	unlink(tmp);
	return err;
}

/* Rewrite the summary if anything changed since the last time (serve() calls it each second). */
static void update_summary(void)
{
	static struct counters written;
	int err;

	if (!memcmp(&written, &cnt, sizeof(cnt)))
		return;
	err = write_summary();
	if (err) {
		if (!cnt.summary_errors++)
			log_error("cannot write %s: %s (will retry every second; further errors "
				  "are only counted)",
				  env.count_file, strerror(-err));
		return;
	}
	written = cnt;
}

/*
 * protobuf-c allocates every element of a message on its own: an empty KeyValue is 2 bytes
 * on the wire and some 60 once unpacked, so a body within --max-body (or a gzip bomb within
 * it) can still unpack to gigabytes. Its allocator gets a byte budget: an allocation past
 * it fails, which fails the unpack (protobuf-c frees what it had), and the request is a 413.
 */
struct unpack_budget {
	size_t left;
	bool exceeded;
};

/* Each block remembers its cost, so that free gives it back (protobuf-c's free has no size). */
union block_head {
	size_t cost;
	max_align_t align;
};

/* malloc's own overhead per block, counted so that tiny blocks cost what they really do */
#define MALLOC_OVERHEAD 16

static void *budget_alloc(void *data, size_t size)
{
	struct unpack_budget *b = data;
	size_t cost = size + sizeof(union block_head) + MALLOC_OVERHEAD;
	union block_head *h;

	if (size > b->left || cost > b->left) {
		b->exceeded = true;
		return NULL;
	}
	h = malloc(size + sizeof(*h));
	if (!h)
		return NULL;
	h->cost = cost;
	b->left -= cost;
	return h + 1;
}

static void budget_free(void *data, void *p)
{
	struct unpack_budget *b = data;
	union block_head *h;

	if (!p)
		return;
	h = (union block_head *)p - 1;
	b->left += h->cost;
	free(h);
}

/* Unpack a request and write its spans as JSON lines; *n of them. Errors as take_spans. */
static int write_request(const uint8_t *body, size_t len, size_t *n, const char **why)
{
	struct unpack_budget budget = {.left = env.max_unpack};
	ProtobufCAllocator alloc = {
	    .alloc = budget_alloc, .free = budget_free, .allocator_data = &budget};
	struct walk w = {0};
	Request *req;
	int err;

	if (!body) /* an empty body has no buffer; NULL + 0 is undefined behaviour */
		body = (const uint8_t *)"";
	err = walk_message(body, body + len, M_REQUEST, 0, &w);
	if (err)
		return err;
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
	    &alloc, len, body);
	if (!req)
		return budget.exceeded ? -E2BIG : -EBADMSG;
	*why = invalid_ids(req);
	if (*why) {
		err = -EINVAL;
		goto out_free;
	}
	*n = write_spans(req);
out_free:
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
	    req, &alloc);
	return err;
}

/*
 * --count-only: one walk of the wire format checks the request and counts its spans by
 * kind, with no unpacking and no output; the counts go to the summary file.
 */
static int count_request(const uint8_t *body, size_t len, size_t *n, const char **why)
{
	struct tally t = {0};
	struct walk w = {.tally = &t};
	int err;

	err = walk_message(body, body + len, M_REQUEST, 0, &w);
	if (err) {
		*why = w.why;
		return err;
	}
	cnt.kind_server += t.server;
	cnt.kind_client += t.client;
	cnt.kind_other += t.other;
	*n = t.spans;
	return 0;
}

/*
 * Take the spans of an ExportTraceServiceRequest: write them, or count them. 0 and their
 * number in *n; -ELOOP if values nest too deep, -EBADMSG if it is not an
 * ExportTraceServiceRequest, -EINVAL for invalid ids (all three a 400), -E2BIG if it would
 * unpack to more than --max-unpack (a 413); *why says which.
 */
static int take_spans(const uint8_t *body, size_t len, size_t *n, const char **why)
{
	int err;

	*n = 0;
	*why = NULL;
	err = env.count_file ? count_request(body, len, n, why) : write_request(body, len, n, why);
	if (err == -ELOOP)
		*why = "attribute values nested deeper than " STR(MAX_VALUE_DEPTH) " levels";
	else if (err == -E2BIG)
		*why = "request too large once decoded (see --max-unpack)";
	else if (err && !*why)
		*why = "body is not an ExportTraceServiceRequest";
	return err;
}

static void handle_traces(struct conn *c, const struct request *rq, const uint8_t *body, size_t len)
{
	static const uint8_t empty[1];
	struct otlp_buf plain = {0};
	struct answer ok = {.status = 200,
			    .content_type = "application/x-protobuf",
			    .body = empty,
			    .close = !rq->keep_alive};
	const char *why;
	size_t n;
	int err;

	if (rq->content_encoding[0] && !strcasecmp(rq->content_encoding, "gzip")) {
		err = otlp_gunzip(body, len, env.max_body, &plain);
		if (err) {
			cnt.too_large += err == -EFBIG;
			answer_error(c, err == -EFBIG ? 413 : 400, 3,
				     err == -EFBIG
					 ? "body too large after gunzip"
					 : "Content-Encoding gzip, but the body is not gzip",
				     !rq->keep_alive, false);
			goto out;
		}
		body = otlp_buf_payload(&plain);
		len = plain.len;
	} else if (rq->content_encoding[0] && strcasecmp(rq->content_encoding, "identity")) {
		answer_error(c, 415, 3, "unsupported Content-Encoding (use gzip or none)",
			     !rq->keep_alive, false);
		goto out;
	}
	if (strncasecmp(rq->content_type, "application/x-protobuf", 22)) {
		answer_error(c, 415, 3,
			     "unsupported Content-Type: hoptrace-collect takes "
			     "application/x-protobuf (OTLP/HTTP binary)",
			     !rq->keep_alive, false);
		goto out;
	}
	err = take_spans(body, len, &n, &why);
	if (err) {
		cnt.too_large += err == -E2BIG;
		answer_error(c, err == -E2BIG ? 413 : 400, 3, why, !rq->keep_alive, false);
		goto out;
	}
	cnt.spans += n;
	cnt.accepted++;
	if (env.dump_dir)
		dump_body(body, len);
	if (!env.quiet)
		log_info("accepted %zu spans (%zu bytes%s)", n, len, plain.data ? ", gzip" : "");
	/* an empty ExportTraceServiceResponse is zero bytes: full success */
	ok.body_len = 0;
	queue_answer(c, &ok, false);
out:
	otlp_buf_free(&plain);
}

static bool fault_now(void)
{
	if (env.fail_first)
		return requests_seen <= (uint64_t)env.fail_first;
	return env.fail_status != 0;
}

static void handle_request(struct conn *c, const struct request *rq, const uint8_t *body,
			   size_t len)
{
	char path[256];
	char *q;

	cnt.requests++;
	snprintf(path, sizeof(path), "%s", rq->target);
	q = strchr(path, '?');
	if (q)
		*q = '\0';
	if (strcmp(path, "/v1/traces")) {
		answer_error(c, 404, 5, "not found: OTLP traces go to POST /v1/traces",
			     !rq->keep_alive, false);
		return;
	}
	if (strcmp(rq->method, "POST")) {
		answer_error(c, 405, 3, "use POST", !rq->keep_alive, false);
		return;
	}
	requests_seen++;
	if (fault_now()) {
		int status = env.fail_status ? env.fail_status : 503;

		cnt.faults++;
		answer_error(c, status, status == 503 ? 14 : 3, "injected failure", !rq->keep_alive,
			     true);
		return;
	}
	handle_traces(c, rq, body, len);
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->outbuf);
	otlp_buf_free(&c->body);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

static size_t conn_buffered(const struct conn *c)
{
	return c->in_cap + c->body.cap;
}

/* Input held for all connections together (--max-buffered), and who holds the most. */
static size_t buffered_bytes(struct conn **biggest)
{
	size_t total = 0;

	*biggest = NULL;
	for (int i = 0; i < MAX_CONNS; i++) {
		total += conn_buffered(&conns[i]);
		if (conns[i].out_len) /* its answer is on its way: not to be replaced */
			continue;
		if (!*biggest || conn_buffered(&conns[i]) > conn_buffered(*biggest))
			*biggest = &conns[i];
	}
	return total;
}

/* Answer 503 and drop the input at once: the request will not be read further. */
static void shed(struct conn *c)
{
	cnt.busy++;
	answer_error(c, 503, 8, "receiver buffers full: retry later", true, false);
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_cap = 0;
	otlp_buf_free(&c->body);
}

/*
 * May a connection's buffers grow by more bytes (--max-buffered)? While they may not, the
 * connection holding the most is shed: clients that fill the buffers with slow bodies
 * cannot keep a small request out. False if that is c itself.
 */
static bool may_buffer(struct conn *c, size_t more)
{
	struct conn *biggest;

	while (buffered_bytes(&biggest) + more > env.max_buffered) {
		if (!biggest || biggest == c || conn_buffered(biggest) <= conn_buffered(c)) {
			shed(c);
			return false;
		}
		shed(biggest);
	}
	return true;
}

/* Where parsing a request stands after one step. */
enum progress {
	P_MORE,	    /* waits for more input */
	P_NEXT,	    /* took a step: try the next one */
	P_ANSWERED, /* the request, or an error, has been answered */
};

/* Ready for the next request on a kept-alive connection. */
static void request_done(struct conn *c, uint64_t now)
{
	c->phase = PH_HEAD;
	c->scanned = 0;
	otlp_buf_free(&c->body); /* an idle connection holds no body buffer */
	c->sent_continue = false;
	c->continue_due = false;
	c->request_start = c->in_len ? now : 0; /* a pipelined request has begun */
}

static enum progress answer_malformed(struct conn *c, int status, const char *why)
{
	cnt.too_large += status == 413;
	answer_error(c, status, 3, why, true, false);
	return P_ANSWERED;
}

/* A body is awaited: the client may want a 100 Continue first (RFC 9110 10.1.1). */
static enum progress await_body(struct conn *c)
{
	if (c->rq.expect_continue && !c->sent_continue)
		c->continue_due = true;
	return P_MORE;
}

static enum progress step_head(struct conn *c)
{
	size_t hend = header_end(c->in, c->in_len, &c->scanned);

	if (!hend)
		return c->in_len > MAX_HEADER ? answer_malformed(c, 431, "header block too large")
					      : P_MORE;
	if (parse_head((const char *)c->in, hend, &c->rq))
		return answer_malformed(c, 400, "malformed HTTP request");
	consume(c, hend);
	if (c->rq.chunked) {
		c->phase = PH_CHUNK_SIZE;
		return P_NEXT;
	}
	if (c->rq.content_length < 0)
		c->rq.content_length = 0;
	if ((unsigned long long)c->rq.content_length > env.max_body)
		return answer_malformed(c, 413, "body too large");
	c->phase = PH_BODY;
	return P_NEXT;
}

static enum progress step_body(struct conn *c, uint64_t now)
{
	size_t len = (size_t)c->rq.content_length;

	if (c->in_len < len)
		return await_body(c);
	handle_request(c, &c->rq, c->in, len);
	consume(c, len);
	request_done(c, now);
	return P_ANSWERED;
}

/* One line of at most max bytes (with its LF) at the start of the input; 0 if incomplete. */
static size_t line_len(const struct conn *c, size_t max, bool *too_long)
{
	const uint8_t *eol = memchr(c->in, '\n', c->in_len < max ? c->in_len : max);

	*too_long = !eol && c->in_len >= max;
	return eol ? (size_t)(eol - c->in) + 1 : 0;
}

/* chunk-size [ chunk-ext ] CRLF; extensions are skipped. */
static enum progress step_chunk_size(struct conn *c)
{
	unsigned long long size = 0;
	bool too_long;
	size_t len = line_len(c, 1024, &too_long), i;

	if (!len)
		return too_long ? answer_malformed(c, 400, "malformed chunked body")
				: await_body(c);
	for (i = 0; i < len; i++) {
		uint8_t ch = c->in[i];
		int h = ch >= '0' && ch <= '9'	 ? ch - '0'
			: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
			: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
						 : -1;

		if (h < 0)
			break;
		if (i >= 15)
			return answer_malformed(c, 400, "malformed chunked body");
		size = size * 16 + (unsigned)h;
	}
	if (!i)
		return answer_malformed(c, 400, "malformed chunked body");
	consume(c, len);
	if (size == 0) {
		c->phase = PH_TRAILER;
		c->trailer_len = 0;
		return P_NEXT;
	}
	if (c->body.len + size > env.max_body)
		return answer_malformed(c, 413, "body too large");
	c->chunk_left = size;
	c->phase = PH_CHUNK_DATA;
	return P_NEXT;
}

/* Chunk data is moved to the body as it arrives, whole chunk or not. */
static enum progress step_chunk_data(struct conn *c)
{
	size_t n = c->in_len < c->chunk_left ? c->in_len : (size_t)c->chunk_left;
	size_t need = c->body.len + n;

	if (!n)
		return await_body(c);
	if (need > c->body.cap) {
		size_t ncap = c->body.cap ? c->body.cap : 4096;

		while (ncap < need)
			ncap *= 2; /* as otlp_buf_reserve will */
		if (!may_buffer(c, ncap - c->body.cap))
			return P_ANSWERED;
		if (otlp_buf_reserve(&c->body, need))
			return answer_malformed(c, 503, "out of memory");
	}
	memcpy(otlp_buf_payload(&c->body) + c->body.len, c->in, n);
	c->body.len += n;
	c->chunk_left -= n;
	consume(c, n);
	if (!c->chunk_left)
		c->phase = PH_CHUNK_CRLF;
	return P_NEXT;
}

static enum progress step_chunk_crlf(struct conn *c)
{
	if (c->in_len < 2)
		return await_body(c);
	if (c->in[0] != '\r' || c->in[1] != '\n')
		return answer_malformed(c, 400, "malformed chunked body");
	consume(c, 2);
	c->phase = PH_CHUNK_SIZE;
	return P_NEXT;
}

/* trailer-section CRLF: lines up to an empty one, ignored, all within MAX_HEADER */
static enum progress step_trailer(struct conn *c, uint64_t now)
{
	bool too_long;
	size_t len = line_len(c, MAX_HEADER - c->trailer_len + 1, &too_long);

	if (!len)
		return too_long ? answer_malformed(c, 431, "trailer section too large") : P_MORE;
	consume(c, len);
	c->trailer_len += len;
	if (len > 2) /* not the empty line that ends the section */
		return P_NEXT;
	handle_request(c, &c->rq, otlp_buf_payload(&c->body), c->body.len);
	request_done(c, now);
	return P_ANSWERED;
}

/*
 * Parse what has arrived and answer the request if it is complete; socket-free, so that
 * the fuzzer drives it too. The answer is queued in outbuf: pipelined requests wait for it.
 * Returns true if a request was answered.
 */
static bool try_request(struct conn *c)
{
	uint64_t now = now_ms();
	enum progress p;

	if (c->out_len || c->close_after || c->lingering)
		return false;
	if (c->in_len && !c->request_start)
		c->request_start = now;
	do {
		switch (c->phase) {
		case PH_HEAD:
			p = step_head(c);
			break;
		case PH_BODY:
			p = step_body(c, now);
			break;
		case PH_CHUNK_SIZE:
			p = step_chunk_size(c);
			break;
		case PH_CHUNK_DATA:
			p = step_chunk_data(c);
			break;
		case PH_CHUNK_CRLF:
			p = step_chunk_crlf(c);
			break;
		default:
			p = step_trailer(c, now);
		}
	} while (p == P_NEXT);
	return p == P_ANSWERED;
}

/* The status of the answer queued in outbuf (0 if none), as a client would read it. */
static int queued_status(const struct conn *c)
{
	int status = 0;

	if (c->out_len > 12 && !strncmp(c->outbuf, "HTTP/1.1 ", 9))
		status = atoi(c->outbuf + 9);
	return status;
}

/*
 * The request path without a socket: data arrives as recvs of at most piece bytes, each
 * answer is taken as soon as it is queued (as if written at once), until the input ends
 * or an answer closes the connection. Returns the status of the last answer, 0 if none.
 * tests/fuzz/fuzz_collect.c drives it; the receiver itself goes through on_readable().
 */
int collect_feed(const uint8_t *data, size_t len, size_t piece)
{
	struct conn c = {.fd = -1};
	int status = 0;

	for (size_t off = 0; off < len && !c.close_after;) {
		size_t n = len - off < piece ? len - off : piece;

		if (c.in_cap - c.in_len < n) {
			uint8_t *nin = realloc(c.in, c.in_len + n);

			if (!nin)
				break;
			c.in = nin;
			c.in_cap = c.in_len + n;
		}
		memcpy(c.in + c.in_len, data + off, n);
		c.in_len += n;
		off += n;
		while (try_request(&c)) {
			status = queued_status(&c);
			free(c.outbuf);
			c.outbuf = NULL;
			c.out_len = c.out_off = 0;
			if (c.close_after)
				break;
		}
	}
	conn_close(&c);
	return status;
}

/*
 * Set up for collect_feed(): spans to sink, small limits so that each input runs fast,
 * only errors logged. 0, or -EINVAL as schema_init().
 */
int collect_feed_setup(FILE *sink)
{
	out = sink;
	env.quiet = true;
	env.max_body = 1u << 20;
	env.max_unpack = 16u << 20;
	log_set_level(LOG_ERROR);
	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	return schema_init();
}

static void send_continue(struct conn *c)
{
	static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

	c->continue_due = false;
	c->sent_continue = send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL) > 0;
}

/*
 * A connection answered with "close" while its client may still be sending (a body past
 * --max-body): closing with unread input would reset the connection, and the client
 * would likely lose the answer. So shut down writing and read until the client closes, for
 * LINGER_MS at most.
 */
static void conn_linger(struct conn *c)
{
	c->lingering = true;
	c->last_active = now_ms();
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_cap = 0;
	otlp_buf_free(&c->body);
	shutdown(c->fd, SHUT_WR);
}

static void drain(struct conn *c)
{
	char sink[4096];
	ssize_t n = recv(c->fd, sink, sizeof(sink), 0);

	if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
		conn_close(c);
}

/*
 * The most a connection's input buffer holds: a whole head and body (the head is consumed
 * once parsed, a body is read only while no answer is pending) and a read more.
 */
static size_t in_limit(void)
{
	return env.max_body + MAX_HEADER + IO_CHUNK * 2;
}

static void on_readable(struct conn *c)
{
	ssize_t n;

	if (c->lingering) {
		drain(c);
		return;
	}
	if (c->in_cap - c->in_len < IO_CHUNK && c->in_cap < in_limit()) {
		size_t ncap = c->in_cap ? c->in_cap * 2 : IO_CHUNK * 2;
		uint8_t *nin;

		if (ncap > in_limit())
			ncap = in_limit();
		if (!may_buffer(c, ncap - c->in_cap))
			return;
		nin = realloc(c->in, ncap);
		if (!nin) {
			conn_close(c);
			return;
		}
		c->in = nin;
		c->in_cap = ncap;
	}
	if (c->in_len == c->in_cap) {
		conn_close(c); /* a client that sends more than it may: drop it */
		return;
	}
	n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		conn_close(c);
		return;
	}
	c->in_len += (size_t)n;
	try_request(c);
	if (c->continue_due)
		send_continue(c);
}

static void on_writable(struct conn *c)
{
	ssize_t n = send(c->fd, c->outbuf + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

	if (n < 0) {
		if (errno != EINTR && errno != EAGAIN)
			conn_close(c);
		return;
	}
	c->out_off += (size_t)n;
	if (c->out_off < c->out_len)
		return;
	free(c->outbuf);
	c->outbuf = NULL;
	c->out_len = c->out_off = 0;
	c->last_active = now_ms();
	if (c->close_after) {
		conn_linger(c);
		return;
	}
	try_request(c); /* a pipelined request may already be buffered */
}

/*
 * When a connection must next have made progress (ms): a request must arrive whole within
 * --request-timeout of its first byte and its answer be read as fast; a kept-alive
 * connection may idle for --idle-timeout.
 */
static uint64_t conn_deadline(const struct conn *c)
{
	if (c->lingering)
		return c->last_active + LINGER_MS;
	if (c->out_len)
		return c->respond_at + env.request_timeout_ms;
	if (c->request_start)
		return c->request_start + env.request_timeout_ms;
	return c->last_active + env.idle_timeout_ms;
}

static void conn_expire(struct conn *c, uint64_t now)
{
	if (now < conn_deadline(c))
		return;
	if (c->lingering) {
		conn_close(c);
	} else if (c->out_len) {
		cnt.timeouts++; /* a client that does not read its answer */
		conn_close(c);
	} else if (c->request_start) {
		cnt.timeouts++;
		answer_error(c, 408, 4, "request not received in time", true, false);
		c->respond_at = now;
	} else {
		cnt.idle_closed++;
		conn_close(c);
	}
}

static int listen_on(const char *addr, int port)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct addrinfo *ai;
	char portstr[16], host[NI_MAXHOST];
	int fd, one = 1, rc;

	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(addr, portstr, &hints, &ai);
	if (rc) {
		log_error("cannot resolve listen address %s: %s", addr, gai_strerror(rc));
		return -EINVAL;
	}
	/* non-blocking: serve() accepts until none is left */
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
		rc = -errno;
		log_error("cannot listen on %s port %d: %s", addr, port, strerror(-rc));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), portstr, sizeof(portstr),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	/* tests read this line to learn the port chosen for --port 0 */
	log_info("listening on %s port %s (POST /v1/traces)", host, portstr);
	return fd;
}

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

/*
 * The connection to close for a new one when every slot is taken: the one that has waited
 * longest, idle since its last answer or with a request that has been arriving since
 * (a slow client, likely one holding slots on purpose; it gets a 408). A new connection
 * has not waited at all, so it is read before it can be evicted. One whose answer is on its
 * way is left alone. NULL if every connection is waiting for its answer.
 */
static struct conn *pick_victim(void)
{
	struct conn *victim = NULL;
	uint64_t oldest = UINT64_MAX;

	for (int i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &conns[i];
		uint64_t since =
		    c->request_start && !c->lingering ? c->request_start : c->last_active;

		if (!c->out_len && since < oldest) {
			oldest = since;
			victim = c;
		}
	}
	return victim;
}

static void evict(struct conn *c)
{
	static const char timeout[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
				      "Connection: close\r\n\r\n";

	cnt.evicted++;
	if (c->request_start && !c->lingering) /* best effort: the socket does not block */
		(void)!send(c->fd, timeout, sizeof(timeout) - 1, MSG_NOSIGNAL);
	conn_close(c);
}

static struct conn *free_slot(void)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].fd < 0)
			return &conns[i];
	return NULL;
}

/* Accept every pending connection. */
static void accept_all(int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct conn *c;

		if (fd < 0)
			return;
		c = free_slot();
		if (!c) {
			c = pick_victim();
			if (!c) {
				close(fd); /* every slot awaits its answer: the client retries */
				continue;
			}
			evict(c);
		}
		c->fd = fd;
		c->last_active = now_ms();
		cnt.connections++;
	}
}

/* What a connection waits for: input, a chance to write its answer, or nothing yet. */
static short conn_events(const struct conn *c, uint64_t now)
{
	if (c->out_len)
		return c->respond_at > now ? 0 : POLLOUT;
	return POLLIN;
}

static void serve(int lfd)
{
	struct pollfd pfd[MAX_CONNS + 1];
	int idx[MAX_CONNS + 1];
	uint64_t next_summary = now_ms() + SUMMARY_MS;

	while (!exiting) {
		uint64_t now = now_ms(), wake = UINT64_MAX;
		int n = 0, timeout;

		if (env.count_file) {
			if (now >= next_summary) {
				update_summary();
				next_summary = now + SUMMARY_MS;
			}
			wake = next_summary;
		}
		pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
		idx[n++] = -1;
		for (int i = 0; i < MAX_CONNS; i++) {
			struct conn *c = &conns[i];
			uint64_t deadline;

			if (c->fd < 0)
				continue;
			conn_expire(c, now);
			if (c->fd < 0)
				continue;
			deadline = conn_deadline(c);
			if (c->out_len && c->respond_at > now && c->respond_at < deadline)
				deadline = c->respond_at;
			wake = deadline < wake ? deadline : wake;
			pfd[n] = (struct pollfd){.fd = c->fd, .events = conn_events(c, now)};
			idx[n++] = i;
		}
		timeout = wake == UINT64_MAX ? -1 : wake <= now ? 0 : (int)(wake - now);
		if (poll(pfd, (nfds_t)n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll: %s", strerror(errno));
			return;
		}
		for (int k = 0; k < n; k++) {
			struct conn *c;

			if (idx[k] < 0) {
				if (pfd[k].revents & POLLIN)
					accept_all(lfd);
				continue;
			}
			c = &conns[idx[k]];
			if (c->fd < 0)
				continue;
			if (pfd[k].revents & POLLOUT)
				on_writable(c);
			else if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR))
				on_readable(c);
		}
	}
}

#ifndef HOPTRACE_COLLECT_NO_MAIN /* the fuzzer brings its own */
int main(int argc, char **argv)
{
	static const struct argp argp = {opts, parse_arg, NULL, doc};
	struct sigaction sa = {.sa_handler = on_signal};
	int lfd, err;

	err = argp_parse(&argp, argc, argv, 0, NULL, NULL);
	if (err)
		return 2;
	if (env.fail_first && !env.fail_status)
		env.fail_status = 503;
	if (schema_init()) {
		log_error(
		    "internal error: the OTLP messages have fields the validation tables lack "
		    "(update msg_descriptors and MAX_FIELD in %s)",
		    __FILE__);
		return 1;
	}
	if (env.dump_dir && access(env.dump_dir, W_OK | X_OK)) {
		log_error("--dump %s: %s (give an existing, writable directory)", env.dump_dir,
			  strerror(errno));
		return 1;
	}
	/* an empty summary at once: a path that cannot be written fails now, not at exit */
	err = env.count_file ? write_summary() : 0;
	if (err) {
		log_error("--count-only %s: cannot write it: %s", env.count_file, strerror(-err));
		return 1;
	}
	out = stdout;
	if (env.output) {
		out = fopen(env.output, "a");
		if (!out) {
			log_error("cannot open %s for writing: %s", env.output, strerror(errno));
			return 1;
		}
	}
	setvbuf(out, NULL, _IONBF, 0); /* write_spans() hands it whole requests */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd = -1;
	lfd = listen_on(env.listen, env.port);
	if (lfd < 0)
		return 1;
	/* quiet after the "listening" line, which scripts wait for */
	if (env.quiet)
		log_set_level(LOG_WARN);
	serve(lfd);
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i].fd >= 0)
			conn_close(&conns[i]);
	close(lfd);
	fflush(out);
	if (out != stdout)
		fclose(out);
	err = env.count_file ? write_summary() : 0;
	if (err)
		log_error("cannot write %s: %s", env.count_file, strerror(-err));
	log_info("exit: %" PRIu64 " connections, %" PRIu64 " requests, %" PRIu64 " spans, %" PRIu64
		 " bad requests, %" PRIu64 " injected failures, %" PRIu64 " timed out, %" PRIu64
		 " idle closed, %" PRIu64 " evicted, %" PRIu64 " too large, %" PRIu64 " busy%s",
		 cnt.connections, cnt.requests, cnt.spans, cnt.bad_requests, cnt.faults,
		 cnt.timeouts, cnt.idle_closed, cnt.evicted, cnt.too_large, cnt.busy,
		 cnt.dump_errors ? ", some request dumps failed" : "");
	return err ? 1 : 0;
}
#endif
