// SPDX-License-Identifier: BSD-2-Clause
/*
 * OTLP export, pure parts: the encoder checked field by field against the protobuf-c
 * decoder generated from proto/ (and byte for byte against protobuf-c's own packing of what
 * it decoded), gzip, configuration from the environment and flags, gRPC framing, and the
 * retry policy.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "export/otlp_config.h"
#include "export/otlp_encode.h"
#include "export/otlp_gzip.h"
#include "export/otlp_transport.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "resource.h"
#include "span.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Request;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans ResourceSpans;
typedef Opentelemetry__Proto__Trace__V1__Span Span;

#define ANY_STRING OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
#define ANY_BOOL OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE
#define ANY_INT OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE

/* ---- helpers --------------------------------------------------------------------------- */

static struct resource *make_resource(uint32_t pid, const char *svc)
{
	struct resource *r = resource_new(pid, 42);

	assert_non_null(r);
	r->service_name = svc ? strdup(svc) : NULL;
	r->exe_name = strdup("python3.11");
	r->exe_path = strdup("/usr/bin/python3.11");
	return r;
}

static void fill_id(uint8_t *id, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		id[i] = (uint8_t)(seed + i);
}

static const AnyValue *attr(KeyValue **kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(kv[i]->key, key))
			return kv[i]->value;
	return NULL;
}

static void assert_str_attr(KeyValue **kv, size_t n, const char *key, const char *val)
{
	const AnyValue *v = attr(kv, n, key);

	if (!v)
		fail_msg("attribute %s missing", key);
	assert_int_equal(v->value_case, ANY_STRING);
	assert_string_equal(v->string_value, val);
}

static void assert_int_attr(KeyValue **kv, size_t n, const char *key, int64_t val)
{
	const AnyValue *v = attr(kv, n, key);

	if (!v)
		fail_msg("attribute %s missing", key);
	assert_int_equal(v->value_case, ANY_INT);
	assert_int_equal(v->int_value, val);
}

static size_t count_key(KeyValue **kv, size_t n, const char *key)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += !strcmp(kv[i]->key, key);
	return c;
}

/* Decode with protobuf-c, and check that protobuf-c packs it back to the very same bytes. */
static Request *decode_canonical(const struct otlp_buf *b)
{
	Request *req;
	uint8_t *again;
	size_t len;

	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
	    NULL, b->len, otlp_buf_payload(b));
	assert_non_null(req);
	len =
	    opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
		req);
	assert_int_equal(len, b->len);
	again = malloc(len + 1);
	assert_non_null(again);
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(req, again);
	assert_memory_equal(again, otlp_buf_payload(b), len);
	free(again);
	return req;
}

static void free_request(Request *req)
{
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
	    req, NULL);
}

/* ---- encoder --------------------------------------------------------------------------- */

static struct span *server_span(struct resource *r)
{
	struct span *s = span_new();

	assert_non_null(s);
	fill_id(s->trace_id, 16, 0x10);
	fill_id(s->span_id, 8, 0x40);
	fill_id(s->parent_span_id, 8, 0x60);
	s->trace_flags = 1;
	s->kind = SPAN_KIND_SERVER;
	s->status = SPAN_STATUS_UNSET;
	s->start_unix_ns = 1700000000123456789ull;
	s->end_unix_ns = 1700000000223456789ull;
	s->resource = resource_get(r);
	strcpy(s->name, "GET /users/{id}");
	strcpy(s->tracestate, "vendor=abc,other=1");
	span_set_str(s, "http.request.method", "GET", 3);
	span_set_str(s, "url.path", "/users/42", 9);
	span_set_int(s, "server.port", 8080);
	span_set_int(s, "http.response.status_code", 200);
	span_set_bool(s, "hoptrace.tls", false);
	return s;
}

static struct span *client_span(struct resource *r)
{
	static const uint8_t ltrace[16] = {0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
	static const uint8_t lspan[8] = {0xbb, 1, 2, 3, 4, 5, 6, 7};
	struct span *s = span_new();

	assert_non_null(s);
	fill_id(s->trace_id, 16, 0x10);
	fill_id(s->span_id, 8, 0x80);
	/* root: parent all zero */
	s->trace_flags = 0;
	s->kind = SPAN_KIND_CLIENT;
	s->status = SPAN_STATUS_ERROR;
	strcpy(s->status_message, "HTTP 503");
	s->start_unix_ns = 1700000000130000000ull;
	s->end_unix_ns = 1700000000140000000ull;
	s->resource = resource_get(r);
	strcpy(s->name, "POST");
	span_set_int(s, "http.response.status_code", 503);
	span_set_int(s, "hoptrace.negative", -5);
	span_set_bool(s, "hoptrace.retry", true);
	/* invalid UTF-8: a lone continuation byte and a truncated sequence */
	span_set_str(s, "url.full", "http://x/\x80y\xe2\x82", 13);
	span_add_link(s, ltrace, lspan, "ambiguous_parent");
	span_add_link(s, ltrace, lspan, NULL);
	return s;
}

static void test_encode_fields(void **state)
{
	struct resource *r = make_resource(1234, "users");
	struct otlp_kv agent[] = {{"deployment.environment", "prod"}, {"host.name", "node-7"}};
	struct otlp_encoder *enc = otlp_encoder_new(agent, 2);
	struct otlp_buf out = {0};
	struct span *spans[2];
	const ResourceSpans *rs;
	const Span *s, *c;
	Request *req;
	KeyValue **ra;
	size_t nra;

	(void)state;
	assert_non_null(enc);
	r->container_id = strdup("abcdef0123");
	r->pod_uid = strdup("pod-uid-1");
	r->extra[0] = (struct resource_kv){strdup("team"), strdup("core")};
	/* observed service.name wins over the process's own list */
	r->extra[1] = (struct resource_kv){strdup("service.name"), strdup("ignored")};
	/* the agent's list (host-level) wins over the process's */
	r->extra[2] = (struct resource_kv){strdup("deployment.environment"), strdup("staging")};
	r->extra[3] = (struct resource_kv){strdup("host.name"), strdup("evil")};
	r->nextra = 4;
	spans[0] = server_span(r);
	spans[1] = client_span(r);
	assert_int_equal(otlp_encoder__encode(enc, spans, 2, &out), 0);
	req = decode_canonical(&out);

	assert_int_equal(req->n_resource_spans, 1);
	rs = req->resource_spans[0];
	assert_non_null(rs->resource);
	ra = rs->resource->attributes;
	nra = rs->resource->n_attributes;
	assert_str_attr(ra, nra, "service.name", "users");
	assert_int_attr(ra, nra, "process.pid", 1234);
	assert_str_attr(ra, nra, "process.executable.name", "python3.11");
	assert_str_attr(ra, nra, "process.executable.path", "/usr/bin/python3.11");
	assert_str_attr(ra, nra, "container.id", "abcdef0123");
	assert_str_attr(ra, nra, "k8s.pod.uid", "pod-uid-1");
	assert_str_attr(ra, nra, "team", "core");
	assert_str_attr(ra, nra, "deployment.environment", "prod");
	assert_str_attr(ra, nra, "host.name", "node-7");
	assert_str_attr(ra, nra, "os.type", "linux");
	assert_str_attr(ra, nra, "telemetry.sdk.name", "hoptrace");
	assert_str_attr(ra, nra, "telemetry.sdk.version", HOPTRACE_VERSION);
	assert_int_equal(count_key(ra, nra, "service.name"), 1);
	assert_int_equal(count_key(ra, nra, "deployment.environment"), 1);
	assert_int_equal(count_key(ra, nra, "host.name"), 1);

	assert_int_equal(rs->n_scope_spans, 1);
	assert_string_equal(rs->scope_spans[0]->scope->name, "hoptrace");
	assert_string_equal(rs->scope_spans[0]->scope->version, HOPTRACE_VERSION);
	assert_int_equal(rs->scope_spans[0]->n_spans, 2);

	s = rs->scope_spans[0]->spans[0];
	assert_int_equal(s->trace_id.len, 16);
	assert_memory_equal(s->trace_id.data, spans[0]->trace_id, 16);
	assert_int_equal(s->span_id.len, 8);
	assert_memory_equal(s->span_id.data, spans[0]->span_id, 8);
	assert_int_equal(s->parent_span_id.len, 8);
	assert_memory_equal(s->parent_span_id.data, spans[0]->parent_span_id, 8);
	assert_string_equal(s->trace_state, "vendor=abc,other=1");
	assert_string_equal(s->name, "GET /users/{id}");
	assert_int_equal(s->kind,
			 OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER);
	assert_int_equal(s->start_time_unix_nano, 1700000000123456789ull);
	assert_int_equal(s->end_time_unix_nano, 1700000000223456789ull);
	/* sampled, parent known to be remote */
	assert_int_equal(s->flags, 0x01 | 0x100 | 0x200);
	assert_null(s->status);
	assert_int_equal(s->n_attributes, 5);
	assert_str_attr(s->attributes, s->n_attributes, "http.request.method", "GET");
	assert_str_attr(s->attributes, s->n_attributes, "url.path", "/users/42");
	assert_int_attr(s->attributes, s->n_attributes, "server.port", 8080);
	assert_int_attr(s->attributes, s->n_attributes, "http.response.status_code", 200);
	assert_int_equal(attr(s->attributes, s->n_attributes, "hoptrace.tls")->value_case,
			 ANY_BOOL);
	assert_false(attr(s->attributes, s->n_attributes, "hoptrace.tls")->bool_value);
	assert_int_equal(s->n_links, 0);

	c = rs->scope_spans[0]->spans[1];
	assert_int_equal(c->parent_span_id.len, 0);
	assert_int_equal(c->flags, 0); /* root, not sampled: nothing to say */
	assert_string_equal(c->trace_state, "");
	assert_int_equal(c->kind,
			 OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT);
	assert_non_null(c->status);
	assert_int_equal(c->status->code,
			 OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
	assert_string_equal(c->status->message, "HTTP 503");
	assert_int_attr(c->attributes, c->n_attributes, "hoptrace.negative", -5);
	assert_true(attr(c->attributes, c->n_attributes, "hoptrace.retry")->bool_value);
	assert_str_attr(c->attributes, c->n_attributes, "url.full",
			"http://x/\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd");
	assert_int_equal(c->n_links, 2);
	assert_memory_equal(c->links[0]->trace_id.data, spans[1]->links[0].trace_id, 16);
	assert_memory_equal(c->links[0]->span_id.data, spans[1]->links[0].span_id, 8);
	assert_int_equal(c->links[0]->n_attributes, 1);
	assert_str_attr(c->links[0]->attributes, 1, OTLP_LINK_REASON_KEY, "ambiguous_parent");
	assert_int_equal(c->links[1]->n_attributes, 0);

	free_request(req);
	span_free(spans[0]);
	span_free(spans[1]);
	resource_put(r);
	otlp_buf_free(&out);
	otlp_encoder_free(enc);
}

/* Resources group in order of first appearance, spans keep batch order inside a group. */
static void test_encode_grouping(void **state)
{
	enum { NRES = 300, NSPANS = 1500 };
	struct otlp_encoder *enc = otlp_encoder_new(NULL, 0);
	struct resource *res[NRES];
	struct span *spans[NSPANS];
	struct otlp_buf out = {0};
	Request *req;

	(void)state;
	for (int i = 0; i < NRES; i++)
		res[i] = make_resource(1000 + (uint32_t)i, NULL);
	for (int i = 0; i < NSPANS; i++) {
		spans[i] = span_new();
		fill_id(spans[i]->trace_id, 16, 1);
		spans[i]->span_id[0] = (uint8_t)(i >> 8);
		spans[i]->span_id[1] = (uint8_t)i;
		spans[i]->kind = SPAN_KIND_SERVER;
		/* i * 7 % NRES visits every resource, not in pid order */
		spans[i]->resource = i % 11 == 5 ? NULL : resource_get(res[i * 7 % NRES]);
		snprintf(spans[i]->name, sizeof(spans[i]->name), "GET /%d", i);
	}
	assert_int_equal(otlp_encoder__encode(enc, spans, NSPANS, &out), 0);
	req = decode_canonical(&out);
	assert_int_equal(req->n_resource_spans, NRES + 1);

	for (size_t g = 0, seen = 0; g < req->n_resource_spans; g++) {
		const ResourceSpans *rs = req->resource_spans[g];
		const AnyValue *pid =
		    attr(rs->resource->attributes, rs->resource->n_attributes, "process.pid");
		int prev = -1;

		for (size_t k = 0; k < rs->scope_spans[0]->n_spans; k++) {
			const Span *s = rs->scope_spans[0]->spans[k];
			int i = s->span_id.data[0] << 8 | s->span_id.data[1];

			assert_true(i > prev);
			prev = i;
			if (!spans[i]->resource) {
				assert_null(pid);
				assert_str_attr(rs->resource->attributes,
						rs->resource->n_attributes, "service.name",
						"unknown_service");
			} else {
				assert_int_equal(pid->int_value, spans[i]->resource->pid);
				/* no OTEL_SERVICE_NAME: the executable names the service */
				assert_str_attr(rs->resource->attributes,
						rs->resource->n_attributes, "service.name",
						"python3.11");
			}
			seen++;
		}
		if (g == req->n_resource_spans - 1)
			assert_int_equal(seen, NSPANS);
	}
	free_request(req);
	for (int i = 0; i < NSPANS; i++)
		span_free(spans[i]);
	for (int i = 0; i < NRES; i++)
		resource_put(res[i]);
	otlp_buf_free(&out);
	otlp_encoder_free(enc);
}

/* Fixed-size fields filled to the last byte, big strings, an empty batch. */
static void test_encode_edges(void **state)
{
	struct otlp_encoder *enc = otlp_encoder_new(NULL, 0);
	struct resource *r = make_resource(7, "svc");
	struct otlp_buf out = {0};
	struct span *s = span_new();
	char big[SPAN_STRBUF];
	const Span *d;
	Request *req;

	(void)state;
	assert_int_equal(otlp_encoder__encode(enc, NULL, 0, &out), 0);
	assert_int_equal(out.len, 0);

	s->resource = resource_get(r);
	memset(s->name, 'n', sizeof(s->name)); /* no NUL at all */
	memset(s->tracestate, 't', sizeof(s->tracestate));
	s->status = SPAN_STATUS_OK;
	strcpy(s->status_message, "ignored unless ERROR");
	memset(big, 'v', sizeof(big));
	span_set_str(s, "big", big, sizeof(big)); /* truncated to what fits */
	for (int i = 0; s->nattrs < SPAN_MAX_ATTRS; i++)
		span_set_int(s, "k", i);
	fill_id(s->trace_id, 16, 3);
	fill_id(s->span_id, 8, 9);
	assert_int_equal(otlp_encoder__encode(enc, &s, 1, &out), 0);
	req = decode_canonical(&out);
	d = req->resource_spans[0]->scope_spans[0]->spans[0];
	assert_int_equal(strlen(d->name), sizeof(s->name));
	assert_int_equal(strlen(d->trace_state), sizeof(s->tracestate));
	assert_int_equal(d->status->code,
			 OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_OK);
	assert_string_equal(d->status->message, "");
	assert_int_equal(d->n_attributes, SPAN_MAX_ATTRS);
	assert_int_equal(strlen(attr(d->attributes, d->n_attributes, "big")->string_value),
			 SPAN_STRBUF - 1);
	assert_int_equal(d->kind, 0);
	free_request(req);
	span_free(s);
	resource_put(r);
	otlp_buf_free(&out);
	otlp_encoder_free(enc);
}

/* --capture-logs: log lines as Span.events, the rest counted in dropped_events_count. */
static void test_encode_events(void **state)
{
	struct otlp_encoder *enc = otlp_encoder_new(NULL, 0);
	struct resource *r = make_resource(7, "svc");
	struct otlp_buf out = {0};
	struct span *s = server_span(r);
	const Span *d;
	Request *req;

	(void)state;
	assert_int_equal(span_events_add(&s->events, &s->dropped_events, 1700000000150000000ull,
					 SPAN_LOG_STDOUT, NULL, "hello", 5, false),
			 0);
	/* invalid UTF-8 in a line: replaced, the request stays decodable */
	assert_int_equal(span_events_add(&s->events, &s->dropped_events, 1700000000160000000ull,
					 SPAN_LOG_FILE, "/var/log/app.log", "bad \xff", 5, true),
			 0);
	s->dropped_events = 3;
	assert_int_equal(otlp_encoder__encode(enc, &s, 1, &out), 0);
	req = decode_canonical(&out);
	d = req->resource_spans[0]->scope_spans[0]->spans[0];
	assert_int_equal(d->n_events, 2);
	assert_int_equal(d->dropped_events_count, 3);
	assert_int_equal(d->events[0]->time_unix_nano, 1700000000150000000ull);
	assert_string_equal(d->events[0]->name, "log");
	assert_int_equal(d->events[0]->n_attributes, 2);
	assert_str_attr(d->events[0]->attributes, 2, "log.record.original", "hello");
	assert_str_attr(d->events[0]->attributes, 2, "log.iostream", "stdout");
	assert_int_equal(d->events[1]->n_attributes, 3);
	assert_str_attr(d->events[1]->attributes, 3, "log.record.original", "bad \xef\xbf\xbd");
	assert_str_attr(d->events[1]->attributes, 3, "log.file.path", "/var/log/app.log");
	assert_int_equal(attr(d->events[1]->attributes, 3, "hoptrace.log.truncated")->bool_value,
			 1);
	/* the span's own fields are still there */
	assert_int_equal(d->n_attributes, s->nattrs);
	free_request(req);
	span_free(s);
	resource_put(r);
	otlp_buf_free(&out);
	otlp_encoder_free(enc);
}

static void test_utf8(void **state)
{
	(void)state;
	assert_int_equal(otlp_utf8_seq((const unsigned char *)"a", 1), 1);
	assert_int_equal(otlp_utf8_seq((const unsigned char *)"\xc3\xa9", 2), 2);
	assert_int_equal(otlp_utf8_seq((const unsigned char *)"\xc3", 1), 0);
	assert_int_equal(otlp_utf8_seq((const unsigned char *)"\xc0\xaf", 2), 0); /* overlong */
	assert_int_equal(otlp_utf8_seq((const unsigned char *)"\xed\xa0\x80", 3),
			 0); /* surrogate */
	assert_int_equal(otlp_utf8_seq((const unsigned char *)"\xe2\x82\xac", 3), 3);
	assert_int_equal(otlp_utf8_seq((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(otlp_utf8_seq((const unsigned char *)"\xf4\x90\x80\x80", 4), 0);
	assert_int_equal(otlp_utf8_seq((const unsigned char *)"\xff", 1), 0);
}

/* ---- gzip ------------------------------------------------------------------------------ */

static void test_gzip(void **state)
{
	struct otlp_gzip *gz = otlp_gzip_new(1);
	struct otlp_buf packed = {0}, plain = {0};
	uint8_t data[100000];

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i % 251 < 200 ? 'a' + i % 7 : i * 31);
	for (int round = 0; round < 2; round++) { /* the z_stream is reused */
		assert_int_equal(otlp_gzip__compress(gz, data, sizeof(data), &packed), 0);
		assert_true(packed.len < sizeof(data));
		assert_int_equal(otlp_buf_payload(&packed)[0], 0x1f); /* gzip magic */
		assert_int_equal(otlp_buf_payload(&packed)[1], 0x8b);
		assert_int_equal(
		    otlp_gunzip(otlp_buf_payload(&packed), packed.len, 1 << 20, &plain), 0);
		assert_int_equal(plain.len, sizeof(data));
		assert_memory_equal(otlp_buf_payload(&plain), data, sizeof(data));
	}
	assert_int_equal(otlp_gunzip(otlp_buf_payload(&packed), packed.len, 1000, &plain), -EFBIG);
	assert_int_equal(otlp_gunzip(otlp_buf_payload(&packed), packed.len / 2, 1 << 20, &plain),
			 -EBADMSG);
	otlp_buf_payload(&packed)[packed.len / 2] ^= 0xff;
	otlp_buf_payload(&packed)[packed.len / 2 + 1] ^= 0xff;
	assert_int_not_equal(otlp_gunzip(otlp_buf_payload(&packed), packed.len, 1 << 20, &plain),
			     0);
	assert_int_equal(otlp_gunzip((const uint8_t *)"not gzip", 8, 1 << 20, &plain), -EBADMSG);
	assert_int_equal(otlp_gzip__compress(gz, data, 0, &packed), 0);
	assert_int_equal(otlp_gunzip(otlp_buf_payload(&packed), packed.len, 10, &plain), 0);
	assert_int_equal(plain.len, 0);
	otlp_buf_free(&packed);
	otlp_buf_free(&plain);
	otlp_gzip_free(gz);
}

/* ---- configuration --------------------------------------------------------------------- */

static char msg[512];

static int config_from(struct otlp_config *cfg, char **envp)
{
	int err;

	msg[0] = '\0';
	otlp_config_init(cfg);
	err = otlp_config_from_env(cfg, envp, msg, sizeof(msg));
	if (!err)
		err = otlp_config_finish(cfg, msg, sizeof(msg));
	return err;
}

static void expect_error(char **envp, const char *needle1, const char *needle2)
{
	struct otlp_config cfg;

	assert_int_equal(config_from(&cfg, envp), -EINVAL);
	if (!strstr(msg, needle1) || (needle2 && !strstr(msg, needle2)))
		fail_msg("message '%s' lacks '%s' / '%s'", msg, needle1, needle2 ? needle2 : "");
	otlp_config_free(&cfg);
}

static void test_config_defaults(void **state)
{
	char *envp[] = {"PATH=/bin", "OTEL_EXPORTER_OTLP_TIMEOUT=", NULL};
	struct otlp_config cfg;

	(void)state;
	assert_int_equal(config_from(&cfg, envp), 0);
	assert_string_equal(cfg.url, "http://localhost:4318/v1/traces");
	assert_int_equal(cfg.protocol, OTLP_PROTOCOL_HTTP_PROTOBUF);
	assert_false(cfg.endpoint_set);
	assert_false(cfg.gzip);
	assert_int_equal(cfg.timeout_ms, 10000);
	assert_int_equal(cfg.max_queue_size, 2048);
	assert_int_equal(cfg.max_batch_size, 512);
	assert_int_equal(cfg.schedule_delay_ms, OTLP_DEFAULT_SCHEDULE_DELAY_MS);
	assert_int_equal(cfg.export_timeout_ms, 30000);
	assert_int_equal(cfg.nheaders, 0);
	assert_null(cfg.ca_file);
	otlp_config_free(&cfg);
}

static void test_config_endpoints(void **state)
{
	char *base[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=https://otel.example:4318/", NULL};
	char *both[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://a:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://b:9999/custom/path", NULL};
	char *prefix[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=http://gw/otlp", NULL};
	char *grpc[] = {"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
			"OTEL_EXPORTER_OTLP_ENDPOINT=collector:4317",
			"OTEL_EXPORTER_OTLP_INSECURE=true", NULL};
	char *grpc_tls[] = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc",
			    "OTEL_EXPORTER_OTLP_ENDPOINT=collector:4317", NULL};
	char *grpc_path[] = {"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
			     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://c:4317/v1/traces", NULL};
	char *grpc_default[] = {"OTEL_EXPORTER_OTLP_PROTOCOL=grpc", NULL};
	struct otlp_config cfg;

	(void)state;
	assert_int_equal(config_from(&cfg, base), 0);
	assert_string_equal(cfg.url, "https://otel.example:4318/v1/traces");
	assert_true(cfg.endpoint_set);
	otlp_config_free(&cfg);

	assert_int_equal(config_from(&cfg, both), 0);
	assert_string_equal(cfg.url, "http://b:9999/custom/path");
	otlp_config_free(&cfg);

	assert_int_equal(config_from(&cfg, prefix), 0);
	assert_string_equal(cfg.url, "http://gw/otlp/v1/traces");
	otlp_config_free(&cfg);

	assert_int_equal(config_from(&cfg, grpc), 0);
	assert_int_equal(cfg.protocol, OTLP_PROTOCOL_GRPC);
	assert_string_equal(cfg.url, "http://collector:4317" OTLP_GRPC_EXPORT_PATH);
	otlp_config_free(&cfg);

	assert_int_equal(config_from(&cfg, grpc_tls), 0);
	assert_string_equal(cfg.url, "https://collector:4317" OTLP_GRPC_EXPORT_PATH);
	otlp_config_free(&cfg);

	assert_int_equal(config_from(&cfg, grpc_path), 0);
	assert_string_equal(cfg.url, "https://c:4317" OTLP_GRPC_EXPORT_PATH);
	otlp_config_free(&cfg);

	assert_int_equal(config_from(&cfg, grpc_default), 0);
	assert_string_equal(cfg.url, "http://localhost:4317" OTLP_GRPC_EXPORT_PATH);
	assert_false(cfg.endpoint_set);
	otlp_config_free(&cfg);
}

static void test_config_values(void **state)
{
	char *envp[] = {
	    "OTEL_EXPORTER_OTLP_HEADERS=api-key=abc%20def%3D%3D , X-Tenant = t1,",
	    "OTEL_EXPORTER_OTLP_COMPRESSION=gzip",
	    "OTEL_EXPORTER_OTLP_TIMEOUT=2500",
	    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=3000",
	    "OTEL_BSP_MAX_QUEUE_SIZE=100",
	    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=500",
	    "OTEL_BSP_SCHEDULE_DELAY=250",
	    "OTEL_BSP_EXPORT_TIMEOUT=1000",
	    "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod,k8s.cluster.name=c%2C1",
	    "OTEL_SERVICE_NAME=not-for-the-agent",
	    NULL,
	};
	struct otlp_config cfg;

	(void)state;
	assert_int_equal(config_from(&cfg, envp), 0);
	assert_int_equal(cfg.nheaders, 2);
	assert_string_equal(cfg.headers[0].key, "api-key");
	assert_string_equal(cfg.headers[0].value, "abc def==");
	assert_string_equal(cfg.headers[1].key, "X-Tenant");
	assert_string_equal(cfg.headers[1].value, "t1");
	assert_true(cfg.gzip);
	assert_int_equal(cfg.timeout_ms, 3000); /* _TRACES_ wins */
	assert_int_equal(cfg.max_queue_size, 100);
	assert_int_equal(cfg.max_batch_size, 100); /* clamped to the queue */
	assert_int_equal(cfg.schedule_delay_ms, 250);
	assert_int_equal(cfg.export_timeout_ms, 1000);
	assert_int_equal(cfg.nresource, 2);
	assert_string_equal(cfg.resource[1].key, "k8s.cluster.name");
	assert_string_equal(cfg.resource[1].value, "c,1");
	otlp_config_free(&cfg);
}

static void test_config_errors(void **state)
{
	char *json[] = {"OTEL_EXPORTER_OTLP_PROTOCOL=http/json", NULL};
	char *proto[] = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=thrift", NULL};
	char *comp[] = {"OTEL_EXPORTER_OTLP_COMPRESSION=zstd", NULL};
	char *timeout[] = {"OTEL_EXPORTER_OTLP_TIMEOUT=10s", NULL};
	char *negative[] = {"OTEL_EXPORTER_OTLP_TIMEOUT=-1", NULL};
	char *queue[] = {"OTEL_BSP_MAX_QUEUE_SIZE=0", NULL};
	char *delay[] = {"OTEL_BSP_SCHEDULE_DELAY=soon", NULL};
	char *hdr_noeq[] = {"OTEL_EXPORTER_OTLP_HEADERS=token", NULL};
	char *hdr_crlf[] = {"OTEL_EXPORTER_OTLP_TRACES_HEADERS=a=b%0D%0AHost: evil", NULL};
	char *hdr_name[] = {"OTEL_EXPORTER_OTLP_HEADERS=bad name=1", NULL};
	char *hdr_esc[] = {"OTEL_EXPORTER_OTLP_HEADERS=a=%zz", NULL};
	char *res_key[] = {"OTEL_RESOURCE_ATTRIBUTES==v", NULL};
	char *insecure[] = {"OTEL_EXPORTER_OTLP_INSECURE=yes", NULL};
	char *ca[] = {"OTEL_EXPORTER_OTLP_CERTIFICATE=/nonexistent/ca.pem", NULL};
	char *scheme[] = {"OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318", NULL};
	char *key_only[] = {"OTEL_EXPORTER_OTLP_CLIENT_KEY=/dev/null", NULL};
	char *grpc_scheme[] = {"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
			       "OTEL_EXPORTER_OTLP_ENDPOINT=unix:///tmp/x", NULL};

	(void)state;
	expect_error(json, "OTEL_EXPORTER_OTLP_PROTOCOL", "not supported");
	expect_error(proto, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=thrift", "grpc");
	expect_error(comp, "OTEL_EXPORTER_OTLP_COMPRESSION=zstd", "gzip or none");
	expect_error(timeout, "OTEL_EXPORTER_OTLP_TIMEOUT=10s", "milliseconds");
	expect_error(negative, "OTEL_EXPORTER_OTLP_TIMEOUT", NULL);
	expect_error(queue, "OTEL_BSP_MAX_QUEUE_SIZE", NULL);
	expect_error(delay, "OTEL_BSP_SCHEDULE_DELAY", NULL);
	expect_error(hdr_noeq, "OTEL_EXPORTER_OTLP_HEADERS", "key=value");
	expect_error(hdr_crlf, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "line breaks");
	expect_error(hdr_name, "OTEL_EXPORTER_OTLP_HEADERS", "token");
	expect_error(hdr_esc, "OTEL_EXPORTER_OTLP_HEADERS", "percent");
	expect_error(res_key, "OTEL_RESOURCE_ATTRIBUTES", "empty key");
	expect_error(insecure, "OTEL_EXPORTER_OTLP_INSECURE", "true or false");
	expect_error(ca, "OTEL_EXPORTER_OTLP_CERTIFICATE", "No such file");
	expect_error(scheme, "OTEL_EXPORTER_OTLP_ENDPOINT", "http://");
	expect_error(key_only, "CLIENT_KEY", "CLIENT_CERTIFICATE");
	expect_error(grpc_scheme, "OTEL_EXPORTER_OTLP_ENDPOINT", "scheme");
}

static void test_config_flags(void **state)
{
	char *envp[] = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://env:1/v1/traces",
			"OTEL_EXPORTER_OTLP_COMPRESSION=gzip", NULL};
	struct otlp_config cfg;

	(void)state;
	otlp_config_init(&cfg);
	assert_int_equal(otlp_config_from_env(&cfg, envp, msg, sizeof(msg)), 0);
	/* a flag outranks even the signal-specific variable */
	assert_int_equal(
	    otlp_config_set(&cfg, "otlp-endpoint", "http://flag:4318", msg, sizeof(msg)), 0);
	assert_int_equal(otlp_config_set(&cfg, "otlp-compression", "none", msg, sizeof(msg)), 0);
	assert_int_equal(otlp_config_set(&cfg, "otlp-queue-bytes", "8M", msg, sizeof(msg)), 0);
	assert_int_equal(
	    otlp_config_set(&cfg, "otlp-headers", "authorization=Bearer%20x", msg, sizeof(msg)), 0);
	assert_int_equal(otlp_config_set(&cfg, "otlp-timeout", "abc", msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "--otlp-timeout=abc"));
	assert_int_equal(otlp_config_set(&cfg, "otlp-nope", "1", msg, sizeof(msg)), -ENOENT);
	assert_int_equal(otlp_config_set(&cfg, "otlp-queue-bytes", "-1", msg, sizeof(msg)),
			 -EINVAL);
	assert_int_equal(otlp_config_finish(&cfg, msg, sizeof(msg)), 0);
	assert_string_equal(cfg.url, "http://flag:4318/v1/traces");
	assert_false(cfg.gzip);
	assert_int_equal(cfg.max_queue_bytes, 8u << 20);
	assert_string_equal(cfg.headers[0].value, "Bearer x");
	otlp_config_free(&cfg);

	/* a full URL given to --otlp-endpoint is used as it is */
	otlp_config_init(&cfg);
	assert_int_equal(
	    otlp_config_set(&cfg, "otlp-endpoint", "http://h:1/v1/traces", msg, sizeof(msg)), 0);
	assert_int_equal(otlp_config_finish(&cfg, msg, sizeof(msg)), 0);
	assert_string_equal(cfg.url, "http://h:1/v1/traces");
	otlp_config_free(&cfg);
}

/* ---- gRPC framing and retry policy ----------------------------------------------------- */

static void test_grpc_frame(void **state)
{
	uint8_t buf[5 + 300];
	const uint8_t *m;
	bool comp;
	size_t len;

	(void)state;
	otlp_grpc_frame(buf, true, 300);
	assert_memory_equal(buf, "\x01\x00\x00\x01\x2c", 5);
	assert_int_equal(otlp_grpc_unframe(buf, sizeof(buf), &comp, &m, &len), 0);
	assert_true(comp);
	assert_int_equal(len, 300);
	assert_ptr_equal(m, buf + 5);
	otlp_grpc_frame(buf, false, 0);
	assert_int_equal(otlp_grpc_unframe(buf, 5, &comp, &m, &len), 0);
	assert_false(comp);
	assert_int_equal(len, 0);
	assert_int_equal(otlp_grpc_unframe(buf, 4, &comp, &m, &len), -EBADMSG);
	assert_int_equal(otlp_grpc_unframe(buf, 6, &comp, &m, &len), -EBADMSG); /* trailing */
	otlp_grpc_frame(buf, false, 1000);
	assert_int_equal(otlp_grpc_unframe(buf, sizeof(buf), &comp, &m, &len), -EBADMSG);
	buf[0] = 2;
	assert_int_equal(otlp_grpc_unframe(buf, 5, &comp, &m, &len), -EBADMSG);
}

static void test_retry_policy(void **state)
{
	char date[64];
	time_t now = time(NULL), later = now + 5;
	struct tm tm;
	char s[] = "bad%20batch%3a%zz%";

	(void)state;
	assert_int_equal(otlp_classify_http(200), OTLP_OK);
	assert_int_equal(otlp_classify_http(202), OTLP_OK);
	for (long st = 400; st < 600; st++) {
		bool retry = st == 429 || st == 502 || st == 503 || st == 504;

		assert_int_equal(otlp_classify_http(st), retry ? OTLP_RETRY : OTLP_FAIL);
	}
	for (int st = 1; st <= 16; st++) {
		bool retry =
		    st == 1 || st == 4 || st == 8 || st == 10 || st == 11 || st == 14 || st == 15;

		assert_int_equal(otlp_classify_grpc(st), retry ? OTLP_RETRY : OTLP_FAIL);
	}
	assert_int_equal(otlp_classify_grpc(0), OTLP_OK);
	assert_int_equal(otlp_grpc_status_from_http(503), 14);
	assert_int_equal(otlp_grpc_status_from_http(401), 16);
	assert_int_equal(otlp_grpc_status_from_http(418), 2);
	assert_string_equal(otlp_grpc_status_name(14), "UNAVAILABLE");
	assert_string_equal(otlp_grpc_status_name(99), "UNKNOWN");

	assert_int_equal(otlp_parse_retry_after("3", now), 3000);
	assert_int_equal(otlp_parse_retry_after(" 10 ", now), 10000);
	assert_int_equal(otlp_parse_retry_after("0", now), 0);
	assert_int_equal(otlp_parse_retry_after("1.5", now), -1);
	assert_int_equal(otlp_parse_retry_after("soon", now), -1);
	assert_int_equal(otlp_parse_retry_after("99999999999", now), 86400 * 1000);
	gmtime_r(&later, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	assert_int_equal(otlp_parse_retry_after(date, now), 5000);
	assert_int_equal(otlp_parse_retry_after(date, now + 60), 0);

	otlp_grpc_message_decode(s);
	assert_string_equal(s, "bad batch:%zz%");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_encode_fields),
	    cmocka_unit_test(test_encode_grouping),
	    cmocka_unit_test(test_encode_edges),
	    cmocka_unit_test(test_encode_events),
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_gzip),
	    cmocka_unit_test(test_config_defaults),
	    cmocka_unit_test(test_config_endpoints),
	    cmocka_unit_test(test_config_values),
	    cmocka_unit_test(test_config_errors),
	    cmocka_unit_test(test_config_flags),
	    cmocka_unit_test(test_grpc_frame),
	    cmocka_unit_test(test_retry_policy),
	};

	return cmocka_run_group_tests_name("otlp", tests, NULL, NULL);
}
