// SPDX-License-Identifier: BSD-2-Clause
#include "health.h"

#include <inttypes.h>
#include <stdio.h>

uint64_t health_export_stall_default(uint64_t request_timeout_ns)
{
	uint64_t t;

	if (!request_timeout_ns)
		return HEALTH_EXPORT_STALL_NO_TIMEOUT_NS;
	t = 2 * request_timeout_ns + 5 * HEALTH_NS_PER_S;
	return t < HEALTH_EXPORT_STALL_MIN_NS ? HEALTH_EXPORT_STALL_MIN_NS : t;
}

/* now - since in whole seconds (0 when the clock reads earlier than since). */
static uint64_t secs_since(uint64_t now, uint64_t since)
{
	return now > since ? (now - since) / HEALTH_NS_PER_S : 0;
}

static bool stalled(uint64_t now, uint64_t since, uint64_t limit)
{
	return since && now > since && now - since >= limit;
}

bool health_check(const struct health_config *c, const struct health_sample *s, char *why,
		  size_t cap)
{
	if (!s->loop_beat_ns) {
		if (stalled(s->now_ns, s->started_ns, c->startup_ns)) {
			snprintf(why, cap, "event loop not started %" PRIu64 " s after start-up",
				 secs_since(s->now_ns, s->started_ns));
			return false;
		}
	} else if (stalled(s->now_ns, s->loop_beat_ns, c->loop_stall_ns)) {
		snprintf(why, cap, "event loop stalled: no heartbeat for %" PRIu64 " s",
			 secs_since(s->now_ns, s->loop_beat_ns));
		return false;
	}
	if (stalled(s->now_ns, s->ring_stalled_since_ns, c->loop_stall_ns)) {
		snprintf(why, cap, "ring buffer %u not draining for %" PRIu64 " s", s->ring_stalled,
			 secs_since(s->now_ns, s->ring_stalled_since_ns));
		return false;
	}
	if (s->exporting && s->export_pending &&
	    stalled(s->now_ns, s->export_waiting_since_ns, c->export_stall_ns)) {
		snprintf(why, cap,
			 "exporter stuck: %" PRIu64 " spans waiting, no export attempt finished "
			 "for %" PRIu64 " s",
			 s->export_pending, secs_since(s->now_ns, s->export_waiting_since_ns));
		return false;
	}
	if (cap)
		why[0] = '\0';
	return true;
}

void ring_watch__observe(struct ring_watch *w, unsigned ring, uint64_t consumer_pos,
			 uint64_t used_bytes, uint64_t now_ns)
{
	if (ring >= HEALTH_RINGS_MAX)
		return;
	if (ring >= w->nrings) {
		w->nrings = ring + 1;
		w->consumer[ring] = consumer_pos;
		w->stalled_since[ring] = 0;
		return;
	}
	if (used_bytes && consumer_pos == w->consumer[ring]) {
		if (!w->stalled_since[ring])
			w->stalled_since[ring] = now_ns ? now_ns : 1;
	} else {
		w->stalled_since[ring] = 0;
	}
	w->consumer[ring] = consumer_pos;
}

uint64_t ring_watch__stalled_since(const struct ring_watch *w, unsigned *ring)
{
	uint64_t first = 0;

	for (unsigned i = 0; i < w->nrings; i++) {
		if (w->stalled_since[i] && (!first || w->stalled_since[i] < first)) {
			first = w->stalled_since[i];
			*ring = i;
		}
	}
	return first;
}
