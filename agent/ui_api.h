/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The web UI and its query API, mounted on the HTTP endpoint (httpd.h): the UI's files
 * (ui_assets.h), a Jaeger-compatible query API (Jaeger's query service paths and its
 * structured response {data, total, limit, offset, errors}, traces in Jaeger's JSON model,
 * jaeger_json.h) and hoptrace's additions under /api/hoptrace/:
 *
 *   GET /api/services                      service names
 *   GET /api/services/{s}/operations       its span names
 *   GET /api/operations?service=&spanKind= [{name, spanKind}]
 *   GET /api/traces?service=&operation=&tags=&minDuration=&maxDuration=&limit=&start=&end=
 *                  &lookback=              traces (start/end in microseconds; tags a JSON
 *                                          object, {"error":"true"} for failed spans)
 *   GET /api/traces/{id}                   one trace
 *   GET /api/dependencies?endTs=&lookback= [{parent, child, callCount}] (milliseconds)
 *   GET /api/hoptrace/dependencies?...     the same, with errorCount and the propagation
 *                                          verdicts of the calls (ok, forwarded, ...)
 *   GET /api/hoptrace/analyze/{id}         the analysis of one trace (analyze.h's
 *                                          analyze_trace_json: `hoptrace analyze --json`)
 *
 * Everything runs on the HTTP thread, through a store connection of its own (read-only
 * when it opens the agent's database file), never on the event loop. Bounded: limit
 * clamped to UI_API_MAX_LIMIT, answers at most UI_API_MAX_REPLY bytes, spans per trace at
 * most UI_API_MAX_SPANS, a query at most UI_API_QUERY_MS. On a loopback address, a request whose
 * Host is not a loopback name is refused (a web page's DNS rebinding would otherwise read the
 * traces).
 */
#ifndef HOPTRACE_UI_API_H
#define HOPTRACE_UI_API_H

#include <stdbool.h>
#include <sys/socket.h>

#include "httpd.h"

#define UI_API_MAX_LIMIT 1000
#define UI_API_DEFAULT_LIMIT 20
#define UI_API_MAX_REPLY (64u << 20)
#define UI_API_MAX_SPANS 20000
/* A query's time limit (store_set_time_limit): the endpoint's one thread also answers
 * /metrics and /healthz, which a search reading the whole store must not hold up. */
#define UI_API_QUERY_MS 2000

struct store;

struct ui_api {
	char *store_path; /* opened read-only on first use; NULL: st was given */
	struct store *st; /* used on the HTTP thread only */
	bool own_store;	  /* st is ours to close */
	bool loopback;	  /* bound to a loopback address: Host checked */
	unsigned long long requests, errors;
};

/* A UI over the database at path (opened read-only when first needed), or over st (used on
 * the HTTP thread only from now on; not closed by ui_api_free). bound: the listen address. */
int ui_api_init(struct ui_api *a, const char *path, struct store *st,
		const struct sockaddr_storage *bound);
void ui_api_free(struct ui_api *a);

/* The httpd_app_fn (ctx: struct ui_api). */
void ui_api_handle(void *ctx, const struct httpd_request *rq, struct httpd_reply *r);

/* The agent's --ui-listen: the UI on its own endpoint, or mounted beside /metrics on the
 * --metrics-listen endpoint when the address is the same (metrics: that endpoint, or NULL). */
struct ui_agent {
	struct ui_api api;
	struct httpd *own; /* the UI's own endpoint, NULL when it shares the metrics one */
	bool started;
};
int ui_agent_start(struct ui_agent *u, const struct sockaddr_storage *addr, socklen_t len,
		   struct httpd *metrics, const struct sockaddr_storage *metrics_addr,
		   const char *store_path);
/* After the metrics endpoint is stopped (the API may be mounted on it). */
void ui_agent_stop(struct ui_agent *u);

/* `hoptrace ui [--store PATH | --source SPEC] [--listen ADDR:PORT]`; argv[0] is "ui". */
int ui_cli_main(int argc, char **argv);

#endif
