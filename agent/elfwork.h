/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Symbol parsing off the event thread. Reading a file's symbol tables (elfsym.h) may take
 * its whole time budget, and the file belongs to whoever can write it: one worker thread
 * does the parses, so the loop keeps draining the rings meanwhile. The loop submits open
 * files to a bounded queue (full: the caller counts it and retries later) and collects
 * the results on its tick without waiting; it alone uses the results (attaching uprobes).
 */
#ifndef HOPTRACE_ELFWORK_H
#define HOPTRACE_ELFWORK_H

#include <stdbool.h>
#include <stdint.h>

#include "elfsym.h"

/* Files queued or being parsed at once. Each holds an open fd until collected. */
#define ELFWORK_SLOTS 16
/* Names a job looks for, at most. */
#define ELFWORK_MAX_NAMES 8

struct elfwork;

/* A finished job, as elfwork__collect hands it over. */
struct elfwork_result {
	int fd;		 /* the submitted fd, still open: the collector closes it */
	void *ctx;	 /* as submitted */
	int err;	 /* as elfsym_find_funcs; -ECANCELED: stopped before it ran */
	const char *why; /* with err: a static string */
	uint64_t off[ELFWORK_MAX_NAMES];
};

typedef void (*elfwork_done_fn)(void *arg, const struct elfwork_result *r);

/* A worker looking for names[0..n) (want_all and budget as elfsym_find_funcs). names and
 * budget must outlive it. NULL with errno set on failure. */
struct elfwork *elfwork__start(const char *const names[], unsigned n, unsigned want_all,
			       const struct elfsym_budget *budget);
/* Queue a parse of the file open at fd (the job owns fd from then on: it comes back in its
 * result). key identifies the file for elfwork__queued. 0, or -EAGAIN when every slot is
 * taken (fd untouched), -ESHUTDOWN once stopped. */
int elfwork__submit(struct elfwork *w, int fd, uint64_t key, void *ctx);
/* Whether a job of this key is queued, being parsed or waiting to be collected. */
bool elfwork__queued(struct elfwork *w, uint64_t key);
/* Jobs submitted and not collected yet. */
unsigned elfwork__busy(struct elfwork *w);
/* Hand every finished job to done (on the calling thread, without the queue's lock held),
 * freeing its slot. Never waits for a parse. Returns how many. */
unsigned elfwork__collect(struct elfwork *w, elfwork_done_fn done, void *arg);
/* Wait until a job has finished (or nothing is submitted), at most timeout_ms. For
 * start-up, before the loop runs. */
void elfwork__wait(struct elfwork *w, unsigned timeout_ms);
/* Stop the worker: a parse under way ends within its budget, jobs not started end as
 * -ECANCELED. Then hand every job to done and free. NULL is ignored. */
void elfwork__destroy(struct elfwork *w, elfwork_done_fn done, void *arg);

#endif
