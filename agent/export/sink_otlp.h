/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The OTLP sink: emit() queues the span and returns (never blocks the event loop); export
 * workers (cfg->exporters threads, each with its own connection) batch by size and time,
 * encode, gzip and send, several requests in flight at once, retrying transient failures.
 * When the queue is over its budget (spans or bytes) the oldest span is dropped and counted.
 */
#ifndef HOPTRACE_SINK_OTLP_H
#define HOPTRACE_SINK_OTLP_H

#include <stdint.h>

#include "otlp_config.h"
#include "sink.h"

/*
 * Create the sink and start its export workers. cfg must have been finished
 * (otlp_config_finish); the sink copies what it needs, cfg may be freed afterwards.
 * NULL on failure, with the reason logged.
 */
struct sink *sink_otlp_new(const struct otlp_config *cfg);

/* The sink's counters, as print_stats shows them. */
struct sink_otlp_stats {
	uint64_t exported;	     /* spans the receiver accepted */
	uint64_t rejected;	     /* spans the receiver refused in a partial success */
	uint64_t failed;	     /* spans of requests dropped after a permanent failure */
	uint64_t retried;	     /* requests sent again after a transient failure */
	uint64_t dropped_queue_full; /* oldest spans dropped to stay within the queue budget */
	uint64_t dropped_shutdown;   /* spans still queued when the flush deadline passed */
	uint64_t requests;	     /* export requests sent (retries included) */
	uint64_t bytes_sent;	     /* request bytes sent (after compression) */
	uint64_t queued;	     /* spans waiting now */
};

/* Read the counters of a sink made by sink_otlp_new (thread-safe). */
void sink_otlp_get_stats(struct sink *sk, struct sink_otlp_stats *st);

/* Whether export makes progress (health.h): spans queued or being sent, and since when
 * (CLOCK_MONOTONIC ns) they have waited with no export attempt finished (any result: the
 * later of the last attempt's end, or the end of the pause its Retry-After asked for, and the
 * work's arrival plus the schedule delay); 0 with nothing pending. */
struct sink_otlp_health {
	uint64_t pending;
	uint64_t waiting_since_ns;
};

/* Thread-safe. */
void sink_otlp_get_health(struct sink *sk, struct sink_otlp_health *h);

#endif
