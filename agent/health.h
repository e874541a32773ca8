/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * /healthz: is the agent doing its job, or should it be restarted? It fails (HTTP 503, one
 * line that says why) when
 *   - the event loop has not run for loop_stall_ns (it publishes a heartbeat once a second;
 *     before its first one, startup_ns allows for loading the BPF programs);
 *   - a ring buffer holds records that the loop has not consumed for ring_stall_ns (its
 *     consumer position has not moved while the loop ran: the rings stopped draining);
 *   - the OTLP exporter has spans to send and no export attempt has finished (answered with
 *     any status, refused, timed out) for export_stall_ns: a request hangs. A collector that
 *     is down or failing is not the agent's fault, and restarting the agent (a liveness
 *     probe's answer) would not help: the export counters and the log show it instead.
 * The decision is a pure function of a sample and the clock (health_check), so each case is
 * unit-tested with the clock injected; the loop and the exporter keep the timestamps.
 */
#ifndef HOPTRACE_HEALTH_H
#define HOPTRACE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HEALTH_NS_PER_S 1000000000ULL
/* Defaults: the loop and the rings, the start-up allowance. */
#define HEALTH_LOOP_STALL_DEFAULT_NS (10 * HEALTH_NS_PER_S)
#define HEALTH_STARTUP_NS (120 * HEALTH_NS_PER_S)
/* The exporter's default: 2 request timeouts plus the longest backoff (5 s), at least
 * 30 s; 60 s when requests have no timeout (health_export_stall_default). */
#define HEALTH_EXPORT_STALL_MIN_NS (30 * HEALTH_NS_PER_S)
#define HEALTH_EXPORT_STALL_NO_TIMEOUT_NS (60 * HEALTH_NS_PER_S)
/* Longest reason text. */
#define HEALTH_WHY_MAX 160

struct health_config {
	uint64_t loop_stall_ns;	  /* --health-loop-timeout: the loop and the rings */
	uint64_t startup_ns;	  /* before the loop's first heartbeat */
	uint64_t export_stall_ns; /* --health-export-timeout */
};

/* What the checks read: gathered at each /healthz request (any thread). Times are
 * CLOCK_MONOTONIC ns. */
struct health_sample {
	uint64_t now_ns;
	uint64_t started_ns;		  /* the endpoint started */
	uint64_t loop_beat_ns;		  /* the loop's last heartbeat; 0: none yet */
	uint64_t ring_stalled_since_ns;	  /* 0: every ring drains */
	unsigned ring_stalled;		  /* which ring, when one does not */
	bool exporting;			  /* an OTLP exporter runs */
	uint64_t export_pending;	  /* spans queued or in flight */
	uint64_t export_waiting_since_ns; /* work waits, with no answer since then; 0: none */
};

/* The export stall threshold for an OTLP request timeout (0: none), in ns. */
uint64_t health_export_stall_default(uint64_t request_timeout_ns);

/* True when healthy; else false with the reason (one line, no newline) in why[cap]. */
bool health_check(const struct health_config *c, const struct health_sample *s, char *why,
		  size_t cap);

/*
 * Whether each ring drains, watched from the loop thread once a second: a ring that holds
 * records (used bytes > 0) and whose consumer position has not moved since the last
 * observation is stalled since then. Rings past HEALTH_RINGS_MAX are not watched.
 */
#define HEALTH_RINGS_MAX 1024

struct ring_watch {
	uint64_t consumer[HEALTH_RINGS_MAX];
	uint64_t stalled_since[HEALTH_RINGS_MAX]; /* 0: drains */
	unsigned nrings;
};

void ring_watch__observe(struct ring_watch *w, unsigned ring, uint64_t consumer_pos,
			 uint64_t used_bytes, uint64_t now_ns);
/* The earliest time a ring has been stalled since, and which (*ring); 0 when none is. */
uint64_t ring_watch__stalled_since(const struct ring_watch *w, unsigned *ring);

#endif
