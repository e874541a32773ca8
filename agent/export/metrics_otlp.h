/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * OTLP metrics export: the loop encodes a snapshot of the registry (cumulative temporality)
 * as an ExportMetricsServiceRequest every OTEL_METRIC_EXPORT_INTERVAL ms and hands the bytes
 * to the exporter's thread, never waiting for it: a snapshot still unsent when the next one
 * is ready is replaced by it (cumulative: the newer one holds everything the older did).
 */
#ifndef HOPTRACE_METRICS_OTLP_H
#define HOPTRACE_METRICS_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "otlp_config.h"
#include "otlp_encode.h"

struct metrics;
struct metrics_exporter;

#define OTLP_HTTP_METRICS_PATH "/v1/metrics"
#define OTLP_GRPC_METRICS_PATH "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
#define METRICS_DEFAULT_INTERVAL_MS 60000

/*
 * The metrics URL for a finished trace configuration: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT
 * (metrics_endpoint, may be NULL) as is for OTLP/HTTP, else the base endpoint (the general
 * variable or --otlp-endpoint) with /v1/metrics, else the default; gRPC keeps only scheme and
 * authority and calls the MetricsService method. 0 or -errno, with msg.
 */
int metrics_otlp_url(const struct otlp_config *cfg, const char *metrics_endpoint, char **url,
		     char *msg, size_t msglen);

/* Start the exporter thread for cfg (its url replaced by metrics_otlp_url's) exporting every
 * interval_ms. NULL with the reason logged. */
struct metrics_exporter *metrics_exporter_new(const struct otlp_config *cfg, const char *url,
					      int interval_ms);

/* Encode the registry as one ExportMetricsServiceRequest into out (pure; for tests too).
 * now_unix_ns is the time of the data points. 0 or -ENOMEM. */
int metrics_otlp_encode(struct otlp_encoder *enc, const struct metrics *m, uint64_t now_unix_ns,
			struct otlp_buf *out);

#endif
