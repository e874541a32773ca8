// SPDX-License-Identifier: BSD-2-Clause
/*
 * OTLP export throughput on one core: spans/s for encode alone and for encode + gzip, on
 * batches of realistic HTTP spans (10 semconv attributes, 4 processes per batch, random
 * ids). CPU time of this thread is measured, so the figure is per core.
 *
 *	build/otlp_bench [SECONDS_PER_CASE] [BATCH]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "export/otlp_encode.h"
#include "export/otlp_gzip.h"
#include "resource.h"
#include "span.h"

#define NPROC 4

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct resource *make_resource(unsigned i)
{
	static const char *const names[NPROC] = {"frontend", "users", "orders", "payments"};
	struct resource *r = resource_new(4000 + i, 123456789ull * i);
	char path[64];

	snprintf(path, sizeof(path), "/usr/local/bin/%s", names[i]);
	r->service_name = strdup(names[i]);
	r->exe_name = strdup(names[i]);
	r->exe_path = strdup(path);
	r->container_id =
	    strdup("4f2a9c0e1b7d8a3f5e6c2b1a0d9e8f7c6b5a4d3e2f1a0b9c8d7e6f5a4b3c2d1e");
	return r;
}

static struct span *make_span(struct resource *r, unsigned i)
{
	static const char *const paths[] = {"/api/v1/users/12345", "/api/v1/orders?page=2",
					    "/healthz", "/api/v1/payments/9f8e7d/capture"};
	struct span *s = span_new();
	char port[16];

	span_random_id(s->trace_id, 16);
	span_random_id(s->span_id, 8);
	span_random_id(s->parent_span_id, 8);
	s->trace_flags = 1;
	s->kind = i & 1 ? SPAN_KIND_CLIENT : SPAN_KIND_SERVER;
	s->status = SPAN_STATUS_UNSET;
	s->pid = r->pid;
	s->tid = r->pid + i % 8;
	s->start_unix_ns = 1700000000000000000ull + i * 1000003ull;
	s->end_unix_ns = s->start_unix_ns + 250000 + i % 1000;
	s->resource = resource_get(r);
	snprintf(s->name, sizeof(s->name), "GET %s", i % 3 ? "/api/v1/users/{id}" : "/healthz");
	span_set_str(s, "http.request.method", "GET", 3);
	span_set_str(s, "url.path", paths[i % 4], strlen(paths[i % 4]));
	span_set_str(s, "url.scheme", "http", 4);
	span_set_str(s, "server.address", "users.default.svc.cluster.local", 31);
	span_set_int(s, "server.port", 8080);
	span_set_str(s, "client.address", "10.0.3.17", 9);
	snprintf(port, sizeof(port), "%u", 40000 + i % 20000);
	span_set_int(s, "client.port", 40000 + i % 20000);
	span_set_int(s, "http.response.status_code", i % 50 ? 200 : 503);
	span_set_str(s, "network.protocol.version", "1.1", 3);
	span_set_str(s, "user_agent.original", "curl/7.88.1", 11);
	return s;
}

struct result {
	double spans_per_s;
	double bytes_per_span;
};

static struct result run(struct span **spans, size_t nspans, size_t batch, double secs,
			 int gzip_level)
{
	struct otlp_encoder *enc = otlp_encoder_new(NULL, 0);
	struct otlp_gzip *gz = gzip_level ? otlp_gzip_new(gzip_level) : NULL;
	struct otlp_buf raw = {0}, packed = {0};
	uint64_t t0 = cpu_ns(), done = 0, bytes = 0, budget = (uint64_t)(secs * 1e9);
	struct result res;
	size_t off = 0;

	if (!enc || (gzip_level && !gz)) {
		fprintf(stderr, "otlp_bench: out of memory\n");
		exit(1);
	}
	while (cpu_ns() - t0 < budget) {
		for (int rep = 0; rep < 16; rep++) {
			if (off + batch > nspans)
				off = 0;
			if (otlp_encoder__encode(enc, spans + off, batch, &raw))
				exit(1);
			bytes += raw.len;
			if (gz) {
				if (otlp_gzip__compress(gz, otlp_buf_payload(&raw), raw.len,
							&packed))
					exit(1);
				bytes += packed.len - raw.len;
			}
			done += batch;
			off += batch;
		}
	}
	res.spans_per_s = (double)done / ((double)(cpu_ns() - t0) / 1e9);
	res.bytes_per_span = (double)bytes / (double)done;
	otlp_buf_free(&raw);
	otlp_buf_free(&packed);
	otlp_gzip_free(gz);
	otlp_encoder_free(enc);
	return res;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	size_t batch = argc > 2 ? (size_t)atoi(argv[2]) : 512;
	size_t nspans = batch * 16;
	struct resource *res[NPROC];
	struct span **spans;
	struct result r;

	if (secs <= 0 || batch == 0) {
		fprintf(stderr, "usage: %s [SECONDS_PER_CASE] [BATCH]\n", argv[0]);
		return 2;
	}
	spans = calloc(nspans, sizeof(*spans));
	for (unsigned i = 0; i < NPROC; i++)
		res[i] = make_resource(i);
	for (size_t i = 0; i < nspans; i++)
		spans[i] = make_span(res[i % NPROC], (unsigned)i);

	printf("otlp_bench: batch %zu spans, 10 attributes each, %d processes, %.1f s per case\n",
	       batch, NPROC, secs);
	r = run(spans, nspans, batch, secs, 0);
	printf("  encode            %10.0f spans/s per core  %6.1f bytes/span\n", r.spans_per_s,
	       r.bytes_per_span);
	r = run(spans, nspans, batch, secs, 1);
	printf("  encode+gzip(1)    %10.0f spans/s per core  %6.1f bytes/span on the wire\n",
	       r.spans_per_s, r.bytes_per_span);
	r = run(spans, nspans, batch, secs, 6);
	printf("  encode+gzip(6)    %10.0f spans/s per core  %6.1f bytes/span on the wire\n",
	       r.spans_per_s, r.bytes_per_span);

	for (size_t i = 0; i < nspans; i++)
		span_free(spans[i]);
	for (unsigned i = 0; i < NPROC; i++)
		resource_put(res[i]);
	free(spans);
	return 0;
}
