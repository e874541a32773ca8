/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The remote span sources: a Jaeger query API (jaeger:URL) and a Tempo HTTP API (tempo:URL),
 * read over HTTP with libcurl and converted into span lines (tsource.h).
 */
#ifndef HOPTRACE_TSOURCE_REMOTE_H
#define HOPTRACE_TSOURCE_REMOTE_H

#include "hashmap.h"
#include "json_read.h"
#include "tsource_conv.h"

/* Traces asked for per query when the caller sets no limit: the APIs need a number. */
#define TSOURCE_REMOTE_DEFAULT_LIMIT 1000
/* Jaeger services asked for (one query each) when the caller names none. */
#define TSOURCE_REMOTE_MAX_SERVICES 1000u
/* Bytes of all responses of one reading together; each one is bounded by OTLP_DOC_MAX_LEN. */
#define TSOURCE_REMOTE_MAX_TOTAL (512ull << 20)
#define TSOURCE_REMOTE_CONNECT_TIMEOUT_MS 5000
#define TSOURCE_REMOTE_TIMEOUT_MS 60000
/* Seconds one request may take instead (1..3600), for slow backends and for tests. */
#define TSOURCE_TIMEOUT_ENV "HOPTRACE_SOURCE_TIMEOUT"
/* A bearer token for the API (sent as Authorization: Bearer), never shown. */
#define TSOURCE_TOKEN_ENV "HOPTRACE_SOURCE_TOKEN"

/*
 * Every span of one Jaeger API response ({"data":[trace, ...]}, the JSON model of
 * /api/traces and /api/traces/{id}) into c. A trace whose id is already in seen (trace ids
 * folded to 64 bits) is skipped; new ones are added, up to max_traces in seen (0: no bound).
 * Spans or tags that cannot be read are skipped and counted. Returns c->stop.
 */
int tsource_jaeger_doc(struct tconv *c, const struct json_doc *d, const struct json_value *root,
		       struct u64map *seen, size_t max_traces, uint64_t *dropped);

int tsource_jaeger_read(const char *prog, const char *rest, const struct tsource_opts *opts,
			span_line_fn fn, void *ctx, struct tsource_stats *stats);
int tsource_tempo_read(const char *prog, const char *rest, const struct tsource_opts *opts,
		       span_line_fn fn, void *ctx, struct tsource_stats *stats);

#endif
