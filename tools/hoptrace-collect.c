// SPDX-License-Identifier: BSD-2-Clause
/*
 * hoptrace-collect: a small OTLP/HTTP trace receiver. Takes POST /v1/traces
 * (application/x-protobuf, gzip or not) from hoptrace or any OpenTelemetry SDK and writes
 * every span as one JSON line. Single-threaded: poll() over plain sockets, HTTP/1.1
 * keep-alive, Content-Length or chunked bodies. Malformed requests get a 4xx and the
 * server keeps going. Fault options make it a test double for export retries.
 */
#include <argp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "export/otlp_encode.h"
#include "export/otlp_gzip.h"
#include "log.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Request;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Trace__V1__Span Span;

#define MAX_CONNS 128
#define MAX_HEADER (64u << 10)
#define IO_CHUNK 65536

static struct env {
	const char *listen;
	int port;
	const char *output;
	int fail_status;
	long fail_first;
	int retry_after;
	int delay_ms;
	size_t max_body;
	bool quiet;
} env = {
    .listen = "127.0.0.1",
    .port = 4318,
    .retry_after = -1,
    .max_body = 64u << 20,
};

static struct counters {
	uint64_t connections;
	uint64_t requests;
	uint64_t spans;
	uint64_t bad_requests;
	uint64_t faults;
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
    "  hoptrace-collect --fail-status 400      # reject everything (permanent failure)";

enum {
	OPT_FAIL_STATUS = 0x100,
	OPT_FAIL_FIRST,
	OPT_RETRY_AFTER,
	OPT_DELAY_MS,
	OPT_MAX_BODY,
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
    {"max-body", OPT_MAX_BODY, "BYTES", 0, "largest request body, after gunzip (64 MiB)"},
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
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

/* ---- JSON output ----------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		size_t n;

		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			fputc(c, f);
			i++;
		} else if ((n = otlp_utf8_seq((const unsigned char *)s + i, len - i))) {
			fwrite(s + i, 1, n, f);
			i += n;
		} else {
			fputs("\\ufffd", f); /* other SDKs may send anything: keep the JSON valid */
			i++;
		}
	}
	fputc('"', f);
}

static void json_cstr(FILE *f, const char *s)
{
	json_str(f, s ? s : "", s ? strlen(s) : 0);
}

static void json_hex(FILE *f, const ProtobufCBinaryData *b)
{
	if (!b->len) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (size_t i = 0; i < b->len; i++)
		fprintf(f, "%02x", b->data[i]);
	fputc('"', f);
}

static void json_kvs(FILE *f, KeyValue **kv, size_t n, int depth);

static void json_any(FILE *f, const AnyValue *v, int depth)
{
	if (!v || depth > 16) {
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
		if (v->double_value != v->double_value || v->double_value * 0 != 0)
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
			json_kvs(f, v->kvlist_value->values, v->kvlist_value->n_values, depth + 1);
		else
			fputs("{}", f);
		break;
	default:
		fputs("null", f);
	}
}

static void json_kvs(FILE *f, KeyValue **kv, size_t n, int depth)
{
	fputc('{', f);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		json_cstr(f, kv[i]->key);
		fputc(':', f);
		json_any(f, kv[i]->value, depth);
	}
	fputc('}', f);
}

static const AnyValue *find_attr(KeyValue **kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (kv[i]->key && !strcmp(kv[i]->key, key))
			return kv[i]->value;
	return NULL;
}

static const char *kind_name(int kind)
{
	static const char *const names[] = {"unspecified", "internal", "server",
					    "client",	   "producer", "consumer"};

	return kind >= 0 && kind < 6 ? names[kind] : "unspecified";
}

static const char *status_name(int code)
{
	return code == 1 ? "ok" : code == 2 ? "error" : "unset";
}

/* One span per line; field names follow the agent's --output json schema. */
static void json_span(FILE *f, const Span *s, KeyValue **res, size_t nres, const char *scope)
{
	const AnyValue *svc = find_attr(res, nres, "service.name");
	const AnyValue *pid = find_attr(res, nres, "process.pid");

	fputs("{\"trace_id\":", f);
	json_hex(f, &s->trace_id);
	fputs(",\"span_id\":", f);
	json_hex(f, &s->span_id);
	fputs(",\"parent_span_id\":", f);
	json_hex(f, &s->parent_span_id);
	fputs(",\"name\":", f);
	json_cstr(f, s->name);
	fprintf(f, ",\"kind\":\"%s\",\"start_unix_ns\":%" PRIu64 ",\"end_unix_ns\":%" PRIu64,
		kind_name(s->kind), s->start_time_unix_nano, s->end_time_unix_nano);
	fprintf(f, ",\"status\":\"%s\"", status_name(s->status ? s->status->code : 0));
	if (s->status && s->status->message && *s->status->message) {
		fputs(",\"status_message\":", f);
		json_cstr(f, s->status->message);
	}
	fputs(",\"service.name\":", f);
	json_any(f, svc, 0);
	if (pid) {
		fputs(",\"pid\":", f);
		json_any(f, pid, 0);
	}
	if (s->trace_state && *s->trace_state) {
		fputs(",\"trace_state\":", f);
		json_cstr(f, s->trace_state);
	}
	fprintf(f, ",\"flags\":%" PRIu32, s->flags);
	fputs(",\"attributes\":", f);
	json_kvs(f, s->attributes, s->n_attributes, 0);
	if (s->n_links) {
		fputs(",\"links\":[", f);
		for (size_t i = 0; i < s->n_links; i++) {
			const Opentelemetry__Proto__Trace__V1__Span__Link *l = s->links[i];

			fputs(i ? ",{\"trace_id\":" : "{\"trace_id\":", f);
			json_hex(f, &l->trace_id);
			fputs(",\"span_id\":", f);
			json_hex(f, &l->span_id);
			fputs(",\"attributes\":", f);
			json_kvs(f, l->attributes, l->n_attributes, 0);
			fputc('}', f);
		}
		fputc(']', f);
	}
	fputs(",\"scope\":", f);
	json_cstr(f, scope);
	fputs(",\"resource\":", f);
	json_kvs(f, res, nres, 0);
	fputs("}\n", f);
}

static size_t write_spans(const Request *req)
{
	size_t n = 0;

	for (size_t i = 0; i < req->n_resource_spans; i++) {
		const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[i];
		KeyValue **res = rs->resource ? rs->resource->attributes : NULL;
		size_t nres = rs->resource ? rs->resource->n_attributes : 0;

		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[j];
			const char *scope = ss->scope && ss->scope->name ? ss->scope->name : "";

			for (size_t k = 0; k < ss->n_spans; k++, n++)
				json_span(out, ss->spans[k], res, nres, scope);
		}
	}
	fflush(out);
	return n;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

struct conn {
	int fd;
	uint8_t *in;
	size_t in_len;
	size_t in_cap;
	char *outbuf;
	size_t out_len;
	size_t out_off;
	uint64_t respond_at; /* ms; the answer waits in outbuf until then */
	bool close_after;    /* close once the answer is written */
	bool sent_continue;
};

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

/* Find the end of the header block; 0 while incomplete. */
static size_t header_end(const uint8_t *b, size_t len)
{
	for (size_t i = 3; i < len; i++)
		if (b[i] == '\n' && b[i - 1] == '\r' && b[i - 2] == '\n' && b[i - 3] == '\r')
			return i + 1;
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

/*
 * Decode a chunked body (RFC 9112 7.1) from b. Returns bytes consumed (through the final
 * CRLF) with the data in *body, 0 while incomplete, -EBADMSG if malformed, -EFBIG if large.
 */
static long dechunk(const uint8_t *b, size_t len, struct otlp_buf *body)
{
	size_t pos = 0;

	body->len = 0;
	for (;;) {
		const uint8_t *eol = memchr(b + pos, '\n', len - pos);
		unsigned long long size = 0;
		size_t i = pos;
		int digits = 0;

		if (!eol)
			return len - pos > 1024 ? -EBADMSG : 0;
		for (; b + i < eol; i++, digits++) {
			int h = b[i] >= '0' && b[i] <= '9'   ? b[i] - '0'
				: b[i] >= 'a' && b[i] <= 'f' ? b[i] - 'a' + 10
				: b[i] >= 'A' && b[i] <= 'F' ? b[i] - 'A' + 10
							     : -1;

			if (h < 0)
				break;
			if (digits >= 15)
				return -EBADMSG;
			size = size * 16 + (unsigned)h;
		}
		if (!digits)
			return -EBADMSG;
		pos = (size_t)(eol - b) + 1; /* chunk extensions, if any, are skipped */
		if (size == 0) {
			/* trailer section, then an empty line */
			for (;;) {
				const uint8_t *e = memchr(b + pos, '\n', len - pos);

				if (!e)
					return 0;
				if (e - (b + pos) <= 1)
					return (long)((size_t)(e - b) + 1);
				pos = (size_t)(e - b) + 1;
			}
		}
		if (body->len + size > env.max_body)
			return -EFBIG;
		if (len - pos < size + 2)
			return 0;
		if (b[pos + size] != '\r' || b[pos + size + 1] != '\n')
			return -EBADMSG;
		if (otlp_buf_reserve(body, body->len + size))
			return -ENOMEM;
		memcpy(otlp_buf_payload(body) + body->len, b + pos, size);
		body->len += size;
		pos += size + 2;
	}
}

static void handle_traces(struct conn *c, const struct request *rq, const uint8_t *body, size_t len)
{
	static const uint8_t empty[1];
	struct otlp_buf plain = {0};
	struct answer ok = {.status = 200,
			    .content_type = "application/x-protobuf",
			    .body = empty,
			    .close = !rq->keep_alive};
	Request *req;
	size_t n;
	int err;

	if (rq->content_encoding[0] && !strcasecmp(rq->content_encoding, "gzip")) {
		err = otlp_gunzip(body, len, env.max_body, &plain);
		if (err) {
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
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
	    NULL, len, body);
	if (!req) {
		answer_error(c, 400, 3, "body is not an ExportTraceServiceRequest", !rq->keep_alive,
			     false);
		goto out;
	}
	n = write_spans(req);
	cnt.spans += n;
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
	    req, NULL);
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
	close(c->fd);
	free(c->in);
	free(c->outbuf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void consume(struct conn *c, size_t n)
{
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

/* Parse and answer one request if it is complete. Returns true if one was handled. */
static bool try_request(struct conn *c)
{
	struct otlp_buf chunked = {0};
	struct request rq;
	size_t hend;
	long used;

	if (c->out_len)
		return false; /* one answer at a time: pipelined requests wait */
	hend = header_end(c->in, c->in_len);
	if (!hend) {
		if (c->in_len > MAX_HEADER) {
			answer_error(c, 431, 3, "header block too large", true, false);
			return true;
		}
		return false;
	}
	if (parse_head((const char *)c->in, hend, &rq)) {
		answer_error(c, 400, 3, "malformed HTTP request", true, false);
		return true;
	}
	if (rq.chunked) {
		used = dechunk(c->in + hend, c->in_len - hend, &chunked);
		if (used < 0) {
			answer_error(c, used == -EFBIG ? 413 : 400, 3,
				     used == -EFBIG ? "body too large" : "malformed chunked body",
				     true, false);
			otlp_buf_free(&chunked);
			return true;
		}
		if (used == 0) {
			otlp_buf_free(&chunked);
			goto need_more;
		}
		handle_request(c, &rq, otlp_buf_payload(&chunked), chunked.len);
		otlp_buf_free(&chunked);
		consume(c, hend + (size_t)used);
		return true;
	}
	if (rq.content_length < 0)
		rq.content_length = 0;
	if ((unsigned long long)rq.content_length > env.max_body) {
		answer_error(c, 413, 3, "body too large", true, false);
		return true;
	}
	if (c->in_len - hend < (size_t)rq.content_length)
		goto need_more;
	handle_request(c, &rq, c->in + hend, (size_t)rq.content_length);
	consume(c, hend + (size_t)rq.content_length);
	return true;

need_more:
	if (rq.expect_continue && !c->sent_continue) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		c->sent_continue = send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL) > 0;
	}
	return false;
}

static void on_readable(struct conn *c)
{
	ssize_t n;

	if (c->in_cap - c->in_len < IO_CHUNK) {
		size_t ncap = c->in_cap ? c->in_cap * 2 : IO_CHUNK * 2;
		uint8_t *nin;

		if (ncap > env.max_body + MAX_HEADER + IO_CHUNK * 2 + (env.max_body / 2)) {
			conn_close(c); /* a client that sends more than it may: drop it */
			return;
		}
		nin = realloc(c->in, ncap);
		if (!nin) {
			conn_close(c);
			return;
		}
		c->in = nin;
		c->in_cap = ncap;
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
	c->sent_continue = false;
	if (c->close_after) {
		conn_close(c);
		return;
	}
	try_request(c); /* a pipelined request may already be buffered */
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
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

static void accept_one(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_CONNS; i++) {
		if (conns[i].fd < 0) {
			conns[i].fd = fd;
			cnt.connections++;
			return;
		}
	}
	close(fd); /* full: the client retries */
}

static void serve(int lfd)
{
	struct pollfd pfd[MAX_CONNS + 1];
	int idx[MAX_CONNS + 1];

	while (!exiting) {
		uint64_t now = now_ms();
		int n = 0, timeout = -1;

		pfd[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
		idx[n++] = -1;
		for (int i = 0; i < MAX_CONNS; i++) {
			struct conn *c = &conns[i];
			short ev = POLLIN;

			if (c->fd < 0)
				continue;
			if (c->out_len) {
				if (c->respond_at > now) {
					int wait = (int)(c->respond_at - now);

					timeout = timeout < 0 || wait < timeout ? wait : timeout;
					ev = 0; /* answer not due yet; keep reading nothing */
				} else {
					ev = POLLOUT;
				}
			}
			pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
			idx[n++] = i;
		}
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
					accept_one(lfd);
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
	out = stdout;
	if (env.output) {
		out = fopen(env.output, "a");
		if (!out) {
			log_error("cannot open %s for writing: %s", env.output, strerror(errno));
			return 1;
		}
	}
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
	log_info("exit: %" PRIu64 " connections, %" PRIu64 " requests, %" PRIu64 " spans, %" PRIu64
		 " bad requests, %" PRIu64 " injected failures",
		 cnt.connections, cnt.requests, cnt.spans, cnt.bad_requests, cnt.faults);
	return 0;
}
