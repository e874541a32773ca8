/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * `hoptrace status`: what a running agent is doing, read through its local endpoint
 * (--metrics-listen). The agent's loop thread renders /status, a JSON document, once a
 * second next to /metrics (status_render); the subcommand fetches it with libcurl and
 * prints a table or the document (status_cli_main).
 *
 * /status: {"version", "pid", "start_time_unix_s", "uptime_s", "capture", "ready",
 * "counters": {name: value} (every counter of the exit summary), "processes_total",
 * "processes": [{"pid", "exe", "service", "spans", "exited"}] (the STATUS_PROCS_MAX with
 * the most spans, most first)}.
 */
#ifndef HOPTRACE_STATUS_H
#define HOPTRACE_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Processes listed at most: the document stays small however many the agent follows. */
#define STATUS_PROCS_MAX 64
/* Where `hoptrace status` looks without --endpoint (README's --metrics-listen example). */
#define STATUS_DEFAULT_ENDPOINT "127.0.0.1:9464"
/* Bytes of a name (exe, service) shown; longer ones are cut. */
#define STATUS_NAME_MAX 128
/* Largest /status the client reads. */
#define STATUS_BODY_MAX (1u << 20)

struct status_proc {
	uint32_t pid;
	bool exited;
	uint64_t spans;
	const char *exe;     /* process.executable.name */
	const char *service; /* service.name */
};

/* A named counter of the document. */
struct status_counter {
	const char *name;
	uint64_t value;
};

struct status_input {
	const char *version;
	const char *capture;
	uint64_t pid;
	uint64_t start_unix_s;
	uint64_t now_unix_s;
	bool ready;
	const struct status_counter *counters;
	size_t ncounters;
	uint64_t processes_total;
	const struct status_proc *procs; /* most spans first */
	size_t nprocs;
};

/* The document for in, malloc'd into *out (*len bytes, NUL-terminated). 0 or -ENOMEM. */
int status_render(const struct status_input *in, char **out, size_t *len);

struct proc_table;

/* The (at most max) processes of pt with the most spans, most first, into out; the number
 * of processes in pt into *total. Returns how many were written. Loop thread. */
size_t status_top_procs(const struct proc_table *pt, struct status_proc *out, size_t max,
			uint64_t *total);

/* `hoptrace status [--endpoint ADDR:PORT] [--json]`; argv[0] is "status". Exit code. */
int status_cli_main(int argc, char **argv);

#endif
