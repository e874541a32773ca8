/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Traced processes: their OpenTelemetry resource (service name from the process's own
 * OTEL_SERVICE_NAME, else its executable; OTEL_RESOURCE_ATTRIBUTES; container and pod ids
 * from its cgroup), read once from /proc per (tgid, start time) and cached.
 */
#ifndef HOPTRACE_PROC_H
#define HOPTRACE_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hashmap.h"

struct resource;

/* Pod metadata for the resources (k8s.h), behind two calls so that the table does not
 * depend on the API client. enrich adds what is known of r's container and says whether
 * its pod was found; generation changes whenever what is known does. */
struct proc_meta_source {
	bool (*enrich)(void *ctx, struct resource *r);
	uint64_t (*generation)(void *ctx);
	void *ctx;
};

struct proc_table {
	struct u64map by_tgid; /* tgid -> struct proc_entry */
	const char *proc_root; /* "/proc" (tests may point elsewhere) */
	/* the last process the full table had no room for: its minimal resource */
	struct resource *overflow;
	size_t n_exited;	      /* entries of processes that exited, kept a while */
	struct proc_meta_source meta; /* zero: no pod metadata */
};

#define PROC_TABLE_MAX 65536

int proc_table__init(struct proc_table *pt, const char *proc_root);
/* The same with room for max processes (0: PROC_TABLE_MAX). */
int proc_table__init_sized(struct proc_table *pt, const char *proc_root, size_t max);
void proc_table__free(struct proc_table *pt);
/* The resource of a process, read on first use. comm is the fallback service name when
 * /proc no longer has the process. Never NULL unless out of memory. Borrowed reference.
 * When the table is full (after dropping exited processes) /proc is not read: the process
 * gets a resource named after comm, counted in drop_proc_table_full. */
struct resource *proc_table__resource(struct proc_table *pt, uint32_t tgid, uint64_t start_ns,
				      const char *comm);
/* Pod metadata from now on. A process whose pod was not known when its resource was built
 * is looked up again at its next request after the metadata changed: at most once per
 * change, and its spans from then on carry the new resource. */
void proc_table__set_meta(struct proc_table *pt, const struct proc_meta_source *meta);
/* The process exec'd or exited: forget its cached resource. */
void proc_table__forget(struct proc_table *pt, uint32_t tgid);
/* Record that a process exited (spans still open on its sockets end with that reason). */
void proc_table__mark_exited(struct proc_table *pt, uint32_t tgid, uint64_t now_ns);
bool proc_table__exited(const struct proc_table *pt, uint32_t tgid);
/* Drop processes that exited a while ago. now_ns is CLOCK_MONOTONIC. */
void proc_table__expire(struct proc_table *pt, uint64_t now_ns);

/* Parse "k1=v1,k2=v2" (OTEL_RESOURCE_ATTRIBUTES, percent-decoded) into r->extra. A
 * malformed value is discarded whole, as the OTel spec asks. Exposed for tests. */
/* Call fn for every process of the table (live, and exited ones still kept). */
void proc_table__each(const struct proc_table *pt,
		      void (*fn)(void *ctx, const struct resource *r, bool exited), void *ctx);

void resource_parse_attributes(struct resource *r, const char *s);

/* The value of NAME in a NUL-separated environment block env[0..len) (/proc/PID/environ, its
 * last entry possibly unterminated), or NULL. The value is NUL-terminated only when env[len]
 * is NUL (callers read the block into a buffer with a NUL after it). Exposed for tests. */
const char *proc_environ_lookup(const char *env, size_t len, const char *name);
/* Field 22 of /proc/PID/stat (starttime, clock ticks since boot) into *ticks: 0 or -EINVAL.
 * Exposed for tests. */
int proc_stat_start_ticks(const char *stat, size_t len, uint64_t *ticks);
/* Does a stat starttime (at hz ticks a second) name the process whose leader started at
 * start_ns (CLOCK_MONOTONIC, as BPF reads task->start_time)? suspended_ns: CLOCK_BOOTTIME
 * minus CLOCK_MONOTONIC now. Exposed for tests. */
bool proc_start_matches(uint64_t stat_ticks, uint64_t hz, uint64_t start_ns, uint64_t suspended_ns);

#endif
