/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The RED, service-graph and propagation metrics (agent/metrics.h) on the Prometheus page
 * (--metrics-listen), as the OpenTelemetry-to-Prometheus conversion names them: dots become
 * '_', a metric in seconds ends in "_seconds", a counter in "_total"
 * (http.server.request.duration: http_server_request_duration_seconds). Each series is
 * labelled with its attributes and the service.name of its process (label service_name;
 * job and instance are the scraper's). Processes of one service are summed into one series:
 * a pid is not a label Prometheus should keep.
 */
#ifndef HOPTRACE_METRICS_PROM_H
#define HOPTRACE_METRICS_PROM_H

struct prom_writer;

/* Render the registry ctx (struct metrics *) into w; fits metrics_page.render_more.
 * Returns 0 or the writer's error (-ENOSPC, -ENOMEM). */
int metrics_render_prom(void *ctx, struct prom_writer *w);

#endif
