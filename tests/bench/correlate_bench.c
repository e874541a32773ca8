// SPDX-License-Identifier: BSD-2-Clause
/*
 * Micro-benchmark: the cost of finding a client call's parent with many server requests in
 * flight in one process (an event loop: one thread, non-blocking sockets).
 *
 *   cc -O2 -Iagent -Iinclude tests/bench/correlate_bench.c agent/correlate.c \
 *	agent/hashmap.c -o /tmp/correlate_bench && /tmp/correlate_bench 10000
 *
 * Prints ns per request added (each checks what else its thread serves), and ns per lookup for a
 *call carrying the trace id of one request (exact match), and for a call without one on the
 *event-loop thread (thread evidence).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "correlate.h"
#include "span.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: the host is shared */
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 10000, rounds = 20000;
	struct inflight *in = calloc(n, sizeof(*in));
	struct span *spans = calloc(n, sizeof(*spans));
	struct correlate c;
	struct parent_match m;
	uint64_t t0, sink = 0;

	if (!in || !spans || correlate__init(&c))
		return 1;
	for (unsigned i = 0; i < n; i++) { /* page faults outside the timing */
		memcpy(spans[i].trace_id, &i, sizeof(i));
		spans[i].trace_id[15] = 1;
		in[i] = (struct inflight){.tgid = 1,
					  .tid = 1,
					  .conn = i + 1,
					  .start_ns = i,
					  .span = &spans[i],
					  .nonblocking = true};
	}
	/* once untimed: the tables grow to their size (fresh pages fault on first touch) */
	for (unsigned i = 0; i < n; i++)
		if (correlate__add(&c, &in[i]))
			return 1;
	for (unsigned i = 0; i < n; i++)
		correlate__remove(&c, &in[i]);
	t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		if (correlate__add(&c, &in[i]))
			return 1;
	printf("%u in flight: add        %.0f ns/request\n", n, (double)(now_ns() - t0) / n);
	t0 = now_ns();
	for (unsigned r = 0; r < rounds; r++) {
		struct call_query q = {
		    .tgid = 1, .tid = 1, .ts_ns = n, .out_trace_id = spans[r % n].trace_id};

		correlate__find_parent(&c, &q, &m);
		sink += m.conf;
	}
	printf("%u in flight: exact match %.0f ns/lookup\n", n, (double)(now_ns() - t0) / rounds);
	t0 = now_ns();
	for (unsigned r = 0; r < rounds; r++) {
		struct call_query q = {.tgid = 1, .tid = 1, .ts_ns = n};

		correlate__find_parent(&c, &q, &m);
		sink += m.conf;
	}
	printf("%u in flight: by thread   %.0f ns/lookup (%llu)\n", n,
	       (double)(now_ns() - t0) / rounds, (unsigned long long)sink);
	correlate__free(&c);
	free(in);
	free(spans);
	return 0;
}
