/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The agent's reactor: one epoll over the ring buffers (one per CPU, merged back into time
 * order by ringmerge.c), a 5 ms timerfd (drain batched wake-ups, sink ticks, housekeeping)
 * and the stop signals' signalfd (stopsig.h), which ends it at the first one.
 */
#ifndef HOPTRACE_LOOP_H
#define HOPTRACE_LOOP_H

#include <stdint.h>

struct tracker;
struct sink;
struct tls_tracer;
struct stop_signals;
struct ringmerge;

struct loop {
	const int *ringbuf_fds; /* one ring buffer per CPU */
	unsigned nrings;
	uint32_t ring_bytes; /* size of each */
	struct tracker *tracker;
	struct sink *sink;
	struct tls_tracer *tls;	     /* ticks; NULL: no HTTPS tracing */
	struct stop_signals *stop;   /* open (stop_signals__open), read here, owned by the caller */
	uint64_t duration_s;	     /* 0: until a signal */
	void (*on_ready)(void *ctx); /* called once everything is attached and polling */
	void *ready_ctx;
	/* Called once a second from the loop thread, the first time at its first tick, with the
	 * rings (ringmerge__used_bytes); NULL: nothing (the metrics endpoint renders here). */
	void (*on_second)(void *ctx, uint64_t now_ns, const struct ringmerge *rings);
	void *second_ctx;
};

/* Run until a stop signal or the duration; returns 0 or -errno. */
int loop_run(struct loop *l);

#endif
