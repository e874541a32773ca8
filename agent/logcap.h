/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * --capture-logs: log lines as span events. A write a server process makes to its stdout,
 * its stderr or a named log file (bpf/logs.bpf.c) becomes events named "log" on the SERVER
 * span of the request its thread is serving at that moment: one event a line, redacted, with
 * the write's time. A write made while the thread serves no request (start-up, a background
 * thread) or several at once (an event loop) is dropped and counted: a line on the wrong
 * request is worse than no line.
 *
 * The pure parts (line splitting, redaction, which request a thread serves) are separate
 * functions for the unit tests.
 */
#ifndef HOPTRACE_LOGCAP_H
#define HOPTRACE_LOGCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "correlate.h"
#include "hoptrace/events.h"
#include "span.h"

struct exchange;
struct exchange_env;
struct u64map;

/* Bytes of one line kept (before redaction); the rest is cut, and the event says so. */
#define LOGCAP_LINE_MAX 256
/* What a request's log lines may cost the memory budget: its events and its pending line. */
#define LOGCAP_EXCHANGE_COST (sizeof(struct span_events) + sizeof(struct log_partial))
/* Output room log_redact needs for len input bytes: a 1-byte secret becomes "***". */
#define LOG_REDACT_CAP(len) (3 * (len) + 1)

/*
 * One log line made safe to export, into out (cap bytes, NUL-terminated; cap at least
 * LOG_REDACT_CAP(len) for nothing to be cut): URLs lose their userinfo, query and fragment
 * (absolute ones, and paths such as an access log's request target), and the values of
 * obvious credentials are masked as "***": Authorization and Cookie/Set-Cookie header values
 * (to the end of the line), Bearer tokens, and password=, passwd=, secret=, token=,
 * api_key=, apikey=, api-key= in key=value, key: value and JSON "key": "value" forms (any
 * key ending so, e.g. access_token, client_secret). Returns the length written.
 */
size_t log_redact(const char *in, size_t len, char *out, size_t cap);

/* The --capture-log-file files: their paths, by the index the BPF map holds. */
struct logcap_files {
	unsigned n;
	const char *paths[HT_MAX_LOG_FILES];
};

struct logcap {
	int procs_fd; /* BPF map log_procs; -1: none (yet): every call is a no-op */
	const struct logcap_files *files;
	struct u64map *procs; /* tgids registered in procs_fd; NULL: capture off */
};

/* on: --capture-logs. Returns 0 or -ENOMEM. */
int logcap__init(struct logcap *lc, bool on, const struct logcap_files *files);
/* The BPF map, once the programs are loaded (-1: none any more). */
void logcap__set_map(struct logcap *lc, int procs_fd);
void logcap__free(struct logcap *lc);
/* A process was seen serving a request: record its log writes from now on. */
void logcap__server_seen(struct logcap *lc, uint32_t tgid);
/* A process exited. */
void logcap__proc_exited(struct logcap *lc, uint32_t tgid);
/* One HT_EV_LOG record: its lines onto the span of the request its thread serves. */
void logcap__handle(struct logcap *lc, struct exchange_env *env, const struct ht_log_event *ev);

/*
 * A line is often written in pieces (Python's print("password=", pw) makes one write per
 * argument, and one for the newline): the pieces are joined until the newline, so that a line
 * is one event and is redacted whole. This is the line being written on a request.
 */
struct log_partial {
	uint64_t time_unix_ns; /* of its first piece */
	const char *path;      /* SPAN_LOG_FILE: the file's path (static) */
	uint8_t source;	       /* enum span_log_source; 0: no line pending */
	bool cut;	       /* bytes were lost: over LOGCAP_LINE_MAX, or not captured */
	uint16_t len;
	char buf[LOGCAP_LINE_MAX];
};

/* The bytes of one write to source (path: its file) at time t onto ex's events, joined with
 * the line pending. truncated: the write held more than data (the line ends there, cut). */
void logcap_feed(struct exchange_env *env, struct exchange *ex, uint64_t t, uint8_t source,
		 const char *path, const char *data, size_t len, bool truncated);
/* The exchange ends: its pending line, if any, is a line. */
void logcap_flush(struct exchange_env *env, struct exchange *ex);

#endif
