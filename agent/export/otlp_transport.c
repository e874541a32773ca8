// SPDX-License-Identifier: BSD-2-Clause
#include "otlp_transport.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "otlp_encode.h"
#include "otlp_gzip.h"
#include "text.h"

#ifndef HOPTRACE_VERSION
#define HOPTRACE_VERSION "0.0.0"
#endif

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse Response;

/* An answer bigger than this is not an ExportTraceServiceResponse: keep only the start. */
#define RESP_MAX (1u << 20)
/* Inflated gRPC response limit: a partial-success message, not a payload. */
#define RESP_INFLATE_MAX (4u << 20)

struct otlp_transport {
	CURL *easy;
	CURLM *multi;
	struct curl_slist *headers;
	bool grpc;
	bool gzip;
	int abort; /* atomic */
	char errbuf[CURL_ERROR_SIZE];
	/* the answer being received */
	struct otlp_buf resp;
	bool resp_truncated;
	int grpc_status;
	bool resp_grpc_gzip;
	bool resp_protobuf;
	char grpc_message[256];
	char retry_after[256];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

/* curl_global_init is not thread-safe before 7.84: do it once, from whoever comes first. */
static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- pure helpers ---------------------------------------------------------------------- */

void otlp_grpc_frame(uint8_t hdr[5], bool compressed, uint32_t len)
{
	hdr[0] = compressed ? 1 : 0;
	hdr[1] = (uint8_t)(len >> 24);
	hdr[2] = (uint8_t)(len >> 16);
	hdr[3] = (uint8_t)(len >> 8);
	hdr[4] = (uint8_t)len;
}

int otlp_grpc_unframe(const uint8_t *buf, size_t len, bool *compressed, const uint8_t **msg,
		      size_t *msglen)
{
	uint32_t n;

	if (len < 5 || buf[0] > 1)
		return -EBADMSG;
	n = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4];
	if ((size_t)n != len - 5)
		return -EBADMSG;
	*compressed = buf[0] == 1;
	*msg = buf + 5;
	*msglen = n;
	return 0;
}

/* OTLP/HTTP spec, "Failures": only these are worth sending again. */
enum otlp_outcome otlp_classify_http(long status)
{
	if (status >= 200 && status < 300)
		return OTLP_OK;
	switch (status) {
	case 429:
	case 502:
	case 503:
	case 504:
		return OTLP_RETRY;
	default:
		return OTLP_FAIL;
	}
}

/*
 * OTLP/gRPC spec, "Failures": the retryable codes. RESOURCE_EXHAUSTED is retryable there only
 * when the server says recovery is possible; hoptrace retries it with backoff regardless,
 * since a collector shedding load is the common cause.
 */
enum otlp_outcome otlp_classify_grpc(int status)
{
	switch (status) {
	case 0:
		return OTLP_OK;
	case 1:	 /* CANCELLED */
	case 4:	 /* DEADLINE_EXCEEDED */
	case 8:	 /* RESOURCE_EXHAUSTED */
	case 10: /* ABORTED */
	case 11: /* OUT_OF_RANGE */
	case 14: /* UNAVAILABLE */
	case 15: /* DATA_LOSS */
		return OTLP_RETRY;
	default:
		return OTLP_FAIL;
	}
}

/* gRPC's doc/http-grpc-status-mapping.md */
int otlp_grpc_status_from_http(long status)
{
	switch (status) {
	case 400:
		return 13; /* INTERNAL */
	case 401:
		return 16; /* UNAUTHENTICATED */
	case 403:
		return 7; /* PERMISSION_DENIED */
	case 404:
		return 12; /* UNIMPLEMENTED */
	case 429:
	case 502:
	case 503:
	case 504:
		return 14; /* UNAVAILABLE */
	default:
		return 2; /* UNKNOWN */
	}
}

const char *otlp_grpc_status_name(int status)
{
	static const char *const names[] = {
	    "OK",
	    "CANCELLED",
	    "UNKNOWN",
	    "INVALID_ARGUMENT",
	    "DEADLINE_EXCEEDED",
	    "NOT_FOUND",
	    "ALREADY_EXISTS",
	    "PERMISSION_DENIED",
	    "RESOURCE_EXHAUSTED",
	    "FAILED_PRECONDITION",
	    "ABORTED",
	    "OUT_OF_RANGE",
	    "UNIMPLEMENTED",
	    "INTERNAL",
	    "UNAVAILABLE",
	    "DATA_LOSS",
	    "UNAUTHENTICATED",
	};

	if (status < 0 || status >= (int)(sizeof(names) / sizeof(names[0])))
		return "UNKNOWN";
	return names[status];
}

int64_t otlp_parse_retry_after(const char *value, time_t now)
{
	const char *p = value;
	int64_t secs = 0;
	time_t when;

	while (*p == ' ' || *p == '\t')
		p++;
	if (isdigit((unsigned char)*p)) {
		for (; isdigit((unsigned char)*p); p++) {
			secs = secs * 10 + (*p - '0');
			if (secs > 86400)
				secs = 86400; /* a day: anything longer is not a retry hint */
		}
		while (*p == ' ' || *p == '\t')
			p++;
		return *p ? -1 : secs * 1000;
	}
	when = curl_getdate(p, NULL);
	if (when == -1)
		return -1;
	return when <= now ? 0 : (int64_t)(when - now) * 1000;
}

void otlp_grpc_message_decode(char *s)
{
	char *o = s;

	for (; *s; s++) {
		int hi, lo;

		if (*s == '%' && (hi = hex_digit_value(s[1])) >= 0 &&
		    (lo = hex_digit_value(s[2])) >= 0) {
			*o++ = (char)(hi << 4 | lo);
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* ---- response parsing ------------------------------------------------------------------ */

static void copy_text(char *dst, size_t dstlen, const char *src, size_t len)
{
	size_t n = len < dstlen - 1 ? len : dstlen - 1;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];

		dst[i] = c >= 0x20 && c != 0x7f ? (char)c : ' ';
	}
	dst[n] = '\0';
	while (n && dst[n - 1] == ' ')
		dst[--n] = '\0';
}

/* The message (field 2) of a google.rpc.Status, which OTLP/HTTP errors carry. */
static bool rpc_status_message(const uint8_t *b, size_t len, char *out, size_t outlen)
{
	const uint8_t *p = b, *end = b + len;
	uint64_t tag, n;

	while (p < end && otlp_read_varint(&p, end, &tag)) {
		switch (tag & 7) {
		case 0:
			if (!otlp_read_varint(&p, end, &n))
				return false;
			break;
		case 1:
			p += 8;
			break;
		case 5:
			p += 4;
			break;
		case 2:
			if (!otlp_read_varint(&p, end, &n) || n > (uint64_t)(end - p))
				return false;
			if (tag >> 3 == 2) {
				copy_text(out, outlen, (const char *)p, n);
				return true;
			}
			p += n;
			break;
		default:
			return false;
		}
	}
	return false;
}

static void read_partial_success(const uint8_t *b, size_t len, struct otlp_result *res)
{
	Response *r;

	if (!len)
		return;
	r = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
	    NULL, len, b);
	/* a body that is not a response (some proxies answer text) is not an error */
	if (!r)
		return;
	if (r->partial_success) {
		res->rejected = r->partial_success->rejected_spans;
		if (r->partial_success->error_message)
			copy_text(res->message, sizeof(res->message),
				  r->partial_success->error_message,
				  strlen(r->partial_success->error_message));
	}
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(
	    r, NULL);
}

static void http_error_message(struct otlp_transport *t, struct otlp_result *res)
{
	const uint8_t *b = otlp_buf_payload(&t->resp);

	if (t->resp_protobuf &&
	    rpc_status_message(b, t->resp.len, res->message, sizeof(res->message)))
		return;
	copy_text(res->message, sizeof(res->message), (const char *)b, t->resp.len);
}

static void grpc_response(struct otlp_transport *t, struct otlp_result *res)
{
	const uint8_t *msg;
	struct otlp_buf plain = {0};
	bool compressed;
	size_t len;

	if (t->grpc_status < 0) {
		/* a 200 without grpc-status: the stream ended early (gRPC says INTERNAL) */
		res->grpc_status = 13;
		res->outcome = OTLP_FAIL;
		snprintf(res->message, sizeof(res->message), "response without grpc-status");
		return;
	}
	res->grpc_status = t->grpc_status;
	res->outcome = otlp_classify_grpc(t->grpc_status);
	if (res->outcome != OTLP_OK) {
		copy_text(res->message, sizeof(res->message), t->grpc_message,
			  strlen(t->grpc_message));
		return;
	}
	if (!t->resp.len || t->resp_truncated ||
	    otlp_grpc_unframe(otlp_buf_payload(&t->resp), t->resp.len, &compressed, &msg, &len))
		return;
	if (compressed) {
		if (!t->resp_grpc_gzip || otlp_gunzip(msg, len, RESP_INFLATE_MAX, &plain))
			goto out;
		msg = otlp_buf_payload(&plain);
		len = plain.len;
	}
	read_partial_success(msg, len, res);
out:
	otlp_buf_free(&plain);
}

/* ---- curl callbacks -------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct otlp_transport *t = ud;
	size_t len = size * nmemb, room;

	room = t->resp.len < RESP_MAX ? RESP_MAX - t->resp.len : 0;
	if (len > room)
		t->resp_truncated = true;
	if (room && !otlp_buf_reserve(&t->resp, t->resp.len + (len < room ? len : room))) {
		memcpy(otlp_buf_payload(&t->resp) + t->resp.len, data, len < room ? len : room);
		t->resp.len += len < room ? len : room;
	}
	return len; /* never fail the transfer over an oversized answer */
}

/* Headers and, for HTTP/2, trailers: libcurl hands both to this callback, line by line. */
static size_t on_header(char *line, size_t size, size_t nmemb, void *ud)
{
	struct otlp_transport *t = ud;
	size_t len = size * nmemb, nlen;
	const char *colon, *v;
	char value[256];

	if (len >= 5 && !strncasecmp(line, "HTTP/", 5)) {
		/* a new response (after 100 Continue, or a redirect): forget the previous one */
		t->grpc_status = -1;
		t->grpc_message[0] = '\0';
		t->retry_after[0] = '\0';
		t->resp_grpc_gzip = false;
		t->resp_protobuf = false;
		return len;
	}
	colon = memchr(line, ':', len);
	if (!colon)
		return len;
	nlen = (size_t)(colon - line);
	v = colon + 1;
	while (v < line + len && (*v == ' ' || *v == '\t'))
		v++;
	copy_text(value, sizeof(value), v, (size_t)(line + len - v));
#define IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(line, name, nlen))
	if (IS("grpc-status")) {
		char *end;
		long st = strtol(value, &end, 10);

		t->grpc_status = end != value && !*end && st >= 0 && st < 100 ? (int)st : 2;
	} else if (IS("grpc-message")) {
		snprintf(t->grpc_message, sizeof(t->grpc_message), "%s", value);
		otlp_grpc_message_decode(t->grpc_message);
	} else if (IS("retry-after")) {
		snprintf(t->retry_after, sizeof(t->retry_after), "%s", value);
	} else if (IS("grpc-encoding")) {
		t->resp_grpc_gzip = !strcasecmp(value, "gzip");
	} else if (IS("content-type")) {
		t->resp_protobuf = !strncasecmp(value, "application/x-protobuf", 22) ||
				   !strncasecmp(value, "application/protobuf", 20);
	}
#undef IS
	return len;
}

/* ---- set-up ---------------------------------------------------------------------------- */

static int add_header(struct curl_slist **list, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int add_header(struct curl_slist **list, const char *fmt, ...)
{
	struct curl_slist *l;
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -E2BIG;
	l = curl_slist_append(*list, line);
	if (!l)
		return -ENOMEM;
	*list = l;
	return 0;
}

static int build_headers(struct otlp_transport *t, const struct otlp_config *cfg, char *msg,
			 size_t msglen)
{
	int err = 0;

	if (t->grpc) {
		err = err ?: add_header(&t->headers, "Content-Type: application/grpc");
		err = err ?: add_header(&t->headers, "TE: trailers");
		if (cfg->gzip)
			err = err ?: add_header(&t->headers, "grpc-encoding: gzip");
		if (cfg->timeout_ms > 0)
			err = err ?: add_header(&t->headers, "grpc-timeout: %dm", cfg->timeout_ms);
	} else {
		err = err ?: add_header(&t->headers, "Content-Type: application/x-protobuf");
		if (cfg->gzip)
			err = err ?: add_header(&t->headers, "Content-Encoding: gzip");
		/* no "Expect: 100-continue" round trip before large bodies */
		err = err ?: add_header(&t->headers, "Expect:");
	}
	for (unsigned i = 0; i < cfg->nheaders && !err; i++) {
		char name[256];
		size_t j;

		/* HTTP/2 (gRPC) requires lower-case header names (RFC 9113 8.2.1) */
		for (j = 0; cfg->headers[i].key[j] && j < sizeof(name) - 1; j++)
			name[j] = t->grpc ? (char)tolower((unsigned char)cfg->headers[i].key[j])
					  : cfg->headers[i].key[j];
		name[j] = '\0';
		err = add_header(&t->headers, "%s: %s", name, cfg->headers[i].value);
	}
	if (err)
		snprintf(msg, msglen, "OTLP headers: %s",
			 err == -E2BIG ? "a header is longer than 1 KiB" : strerror(-err));
	return err;
}

#define SETOPT(opt, val)                                                                           \
	do {                                                                                       \
		CURLcode rc_ = curl_easy_setopt(t->easy, opt, val);                                \
		if (rc_ != CURLE_OK) {                                                             \
			snprintf(msg, msglen, "libcurl: cannot set %s: %s", #opt,                  \
				 curl_easy_strerror(rc_));                                         \
			return -EINVAL;                                                            \
		}                                                                                  \
	} while (0)

static int setup_easy(struct otlp_transport *t, const struct otlp_config *cfg, char *msg,
		      size_t msglen)
{
	long connect_ms = cfg->timeout_ms > 0 && cfg->timeout_ms < 10000 ? cfg->timeout_ms : 10000;

	SETOPT(CURLOPT_URL, cfg->url);
	SETOPT(CURLOPT_NOSIGNAL, 1L); /* we are not the main thread: no SIGALRM for DNS */
	SETOPT(CURLOPT_POST, 1L);
	SETOPT(CURLOPT_HTTPHEADER, t->headers);
	SETOPT(CURLOPT_USERAGENT, "hoptrace/" HOPTRACE_VERSION);
	SETOPT(CURLOPT_TIMEOUT_MS, (long)cfg->timeout_ms);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
	SETOPT(CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(CURLOPT_WRITEDATA, t);
	SETOPT(CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(CURLOPT_HEADERDATA, t);
	if (t->grpc && !strncasecmp(cfg->url, "https:", 6)) {
		/* HTTP/2 through ALPN; gRPC has no HTTP/1.1 fallback: checked after each call */
		SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	} else if (t->grpc) {
		SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
		/*
		 * libcurl before 8.0.0 fails every request after the first on a reused h2c
		 * prior-knowledge connection ("Error in the HTTP2 framing layer", curl issue
		 * 10634, fixed by curl PR 10643). Debian 12 ships 7.88.1: one connection per
		 * export there, which costs a TCP handshake per batch.
		 */
		if (curl_version_info(CURLVERSION_NOW)->version_num < 0x080000)
			SETOPT(CURLOPT_FORBID_REUSE, 1L);
	} else {
		SETOPT(CURLOPT_ACCEPT_ENCODING, ""); /* whatever libcurl can decode */
	}
	if (cfg->ca_file)
		SETOPT(CURLOPT_CAINFO, cfg->ca_file);
	if (cfg->client_cert)
		SETOPT(CURLOPT_SSLCERT, cfg->client_cert);
	if (cfg->client_key)
		SETOPT(CURLOPT_SSLKEY, cfg->client_key);
	return 0;
}

#undef SETOPT

struct otlp_transport *otlp_transport_new(const struct otlp_config *cfg, char *msg, size_t msglen)
{
	struct otlp_transport *t;
	curl_version_info_data *ver;

	if (!cfg->url) {
		snprintf(msg, msglen, "OTLP configuration was not finished (no URL)");
		return NULL;
	}
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		snprintf(msg, msglen, "libcurl: init failed: %s", curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	ver = curl_version_info(CURLVERSION_NOW);
	if (cfg->protocol == OTLP_PROTOCOL_GRPC && !(ver->features & CURL_VERSION_HTTP2)) {
		snprintf(msg, msglen,
			 "OTLP/gRPC needs libcurl with HTTP/2 (nghttp2); this libcurl %s has none: "
			 "use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
			 ver->version);
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(msg, msglen, "out of memory");
		return NULL;
	}
	t->grpc = cfg->protocol == OTLP_PROTOCOL_GRPC;
	t->gzip = cfg->gzip;
	t->easy = curl_easy_init();
	t->multi = curl_multi_init();
	if (!t->easy || !t->multi) {
		snprintf(msg, msglen, "libcurl: cannot create a handle");
		goto err_free;
	}
	if (build_headers(t, cfg, msg, msglen) || setup_easy(t, cfg, msg, msglen))
		goto err_free;
	return t;

err_free:
	otlp_transport_free(t);
	return NULL;
}

void otlp_transport_free(struct otlp_transport *t)
{
	if (!t)
		return;
	if (t->easy)
		curl_easy_cleanup(t->easy);
	if (t->multi)
		curl_multi_cleanup(t->multi);
	curl_slist_free_all(t->headers);
	otlp_buf_free(&t->resp);
	free(t);
}

void otlp_transport__abort(struct otlp_transport *t, bool on)
{
	__atomic_store_n(&t->abort, on ? 1 : 0, __ATOMIC_RELEASE);
	if (on)
		curl_multi_wakeup(t->multi); /* thread-safe, ends a curl_multi_poll at once */
}

/* ---- one request ----------------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool should_stop(struct otlp_transport *t, uint64_t deadline_ns)
{
	return __atomic_load_n(&t->abort, __ATOMIC_ACQUIRE) ||
	       (deadline_ns && mono_ns() >= deadline_ns);
}

/* Run the transfer on the multi handle so that abort and deadline end it at once. */
static CURLcode perform(struct otlp_transport *t, uint64_t deadline_ns, bool *aborted)
{
	CURLcode cc = CURLE_OK;
	int running = 1;
	CURLMsg *m;
	int left;

	*aborted = false;
	if (curl_multi_add_handle(t->multi, t->easy) != CURLM_OK)
		return CURLE_FAILED_INIT;
	for (;;) {
		int wait_ms = 1000;

		if (curl_multi_perform(t->multi, &running) != CURLM_OK || !running)
			break;
		if (should_stop(t, deadline_ns)) {
			*aborted = true;
			break;
		}
		if (deadline_ns) {
			uint64_t now = mono_ns();
			uint64_t left_ms =
			    now < deadline_ns ? (deadline_ns - now) / 1000000 + 1 : 0;

			if (left_ms < (uint64_t)wait_ms)
				wait_ms = (int)left_ms;
		}
		if (curl_multi_poll(t->multi, NULL, 0, wait_ms, NULL) != CURLM_OK)
			break;
	}
	while ((m = curl_multi_info_read(t->multi, &left)))
		if (m->msg == CURLMSG_DONE && m->easy_handle == t->easy)
			cc = m->data.result;
	if (running && !*aborted)
		cc = CURLE_RECV_ERROR; /* the multi handle failed under us */
	/* removing a running transfer closes its connection: the next request reconnects */
	curl_multi_remove_handle(t->multi, t->easy);
	return *aborted ? CURLE_ABORTED_BY_CALLBACK : cc;
}

static enum otlp_outcome classify_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_AGAIN:
	case CURLE_ABORTED_BY_CALLBACK:
		return OTLP_RETRY;
	default:
		/* bad certificates, unsupported protocol, bad URL: retrying will not help */
		return OTLP_FAIL;
	}
}

static void reset_response(struct otlp_transport *t, struct otlp_result *res)
{
	memset(res, 0, sizeof(*res));
	res->grpc_status = -1;
	res->retry_after_ms = -1;
	t->resp.len = 0;
	t->resp_truncated = false;
	t->grpc_status = -1;
	t->grpc_message[0] = '\0';
	t->retry_after[0] = '\0';
	t->resp_grpc_gzip = false;
	t->resp_protobuf = false;
	t->errbuf[0] = '\0';
}

void otlp_transport__send(struct otlp_transport *t, struct otlp_buf *body, uint64_t deadline_ns,
			  struct otlp_result *res)
{
	const uint8_t *data = otlp_buf_payload(body);
	size_t len = body->len;
	long version = 0;
	CURLcode cc;

	reset_response(t, res);
	if (t->grpc) {
		otlp_grpc_frame(body->data, t->gzip, (uint32_t)body->len);
		data = body->data;
		len = body->len + OTLP_HEADROOM;
	}
	curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, data);
	curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	cc = perform(t, deadline_ns, &res->aborted);
	res->curl_code = (int)cc;
	if (cc != CURLE_OK) {
		res->outcome = classify_curl(cc);
		snprintf(res->message, sizeof(res->message), "%s",
			 res->aborted	? "cancelled (shutdown deadline)"
			 : t->errbuf[0] ? t->errbuf
					: curl_easy_strerror(cc));
		return;
	}
	res->bytes_sent = len;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &res->http_status);
	if (t->retry_after[0])
		res->retry_after_ms = otlp_parse_retry_after(t->retry_after, time(NULL));
	if (!t->grpc) {
		res->outcome = otlp_classify_http(res->http_status);
		if (res->outcome == OTLP_OK)
			read_partial_success(otlp_buf_payload(&t->resp), t->resp.len, res);
		else
			http_error_message(t, res);
		return;
	}
	curl_easy_getinfo(t->easy, CURLINFO_HTTP_VERSION, &version);
	if (version != CURL_HTTP_VERSION_2_0) {
		res->outcome = OTLP_FAIL;
		snprintf(
		    res->message, sizeof(res->message),
		    "the server answered over HTTP/1: gRPC needs HTTP/2 (is this the OTLP/HTTP "
		    "port? 4318 is usually HTTP, 4317 gRPC)");
		return;
	}
	if (res->http_status != 200) {
		res->grpc_status = t->grpc_status >= 0
				       ? t->grpc_status
				       : otlp_grpc_status_from_http(res->http_status);
		res->outcome = otlp_classify_grpc(res->grpc_status);
		if (t->grpc_message[0])
			copy_text(res->message, sizeof(res->message), t->grpc_message,
				  strlen(t->grpc_message));
		else
			http_error_message(t, res);
		return;
	}
	grpc_response(t, res);
}
