/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The agent's HTTP endpoint (--metrics-listen): /metrics (Prometheus text), /status (JSON,
 * for `hoptrace status`), /healthz (liveness, health.h) and /readyz (readiness), served by
 * libmicrohttpd in a thread of its own.
 *
 * The event loop never waits on a client: it renders the metrics into a buffer of its own
 * and publishes it (httpd__publish: a pointer swap under a mutex); the HTTP thread answers
 * each scrape with the latest published text, shared by reference, never copied. Clients
 * are bounded: HTTPD_CONN_MAX connections, HTTPD_CONN_PER_IP from one address, each closed
 * after HTTPD_IDLE_TIMEOUT_S idle, HTTPD_CONN_MEMORY bytes of request state each; older
 * snapshots that slow readers still hold are bounded by HTTPD_RETAINED_MAX (past it, scrapes
 * get 503 until they are read).
 */
#ifndef HOPTRACE_HTTPD_H
#define HOPTRACE_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "health.h"

#define HTTPD_CONN_MAX 128
#define HTTPD_CONN_PER_IP 16
#define HTTPD_IDLE_TIMEOUT_S 10
#define HTTPD_CONN_MEMORY (16 * 1024)
/* The application's answers not yet sent whole, all connections together (a client that
 * asks for large answers and reads them slowly, or never, would hold each in memory): past
 * it, 503. Four of the UI's largest answers (UI_API_MAX_REPLY). */
#define HTTPD_APP_REPLY_BUDGET (256u << 20)
/* The most text one rendering may take (prom_writer limit). */
#define HTTPD_SNAPSHOT_MAX (8u << 20)
/* Bytes of replaced snapshots kept alive by responses still being sent. */
#define HTTPD_RETAINED_MAX (2 * HTTPD_SNAPSHOT_MAX)
/* /healthz's thresholds: health.h (HEALTH_LOOP_STALL_DEFAULT_NS, HEALTH_STARTUP_NS). */
/* Longest address text: "[" IPv6 "]:" port. */
#define HTTPD_ADDR_LEN 64

/* The endpoint's own counters. */
struct httpd_stats {
	uint64_t requests_metrics; /* /metrics answered with the metrics */
	uint64_t requests_healthz;
	uint64_t requests_readyz;
	uint64_t requests_other;   /* 404 and 405 */
	uint64_t requests_busy;	   /* /metrics refused: HTTPD_RETAINED_MAX held by slow readers */
	uint64_t connections;	   /* accepted (within the limits) */
	uint64_t connections_open; /* now */
	uint64_t retained_bytes;   /* replaced snapshots still being sent, now */
	uint64_t snapshot_bytes;   /* the latest snapshot's size */
	uint64_t requests_status;  /* /status answered with the document */
};

/*
 * Parse a --metrics-listen value: "PORT" or ":PORT" (127.0.0.1), "IPV4:PORT", "[IPV6]:PORT".
 * Addresses are numeric, no names. Port 0 asks the kernel for a free one. 0 or -EINVAL.
 */
int httpd_parse_listen(const char *s, struct sockaddr_storage *addr, socklen_t *len);

/* addr as "1.2.3.4:80" or "[::1]:80" into out (HTTPD_ADDR_LEN bytes). */
void httpd_format_addr(const struct sockaddr_storage *addr, char *out);

struct httpd;

/* An application mounted on the endpoint (the web UI and its Jaeger API, ui_api.h). It is
 * called on the HTTP thread, with no lock of the endpoint held, for a GET or HEAD of a path
 * the endpoint does not answer itself (every path, when mounted alone). */
struct httpd_request {
	const char *url;      /* the path, percent-decoded by libmicrohttpd, without the query */
	const char *host;     /* the Host header, NULL when absent */
	void *conn;	      /* for httpd_request_arg */
	bool client_loopback; /* the client connected from a loopback address */
};
/* The query argument key (decoded), NULL when absent. */
const char *httpd_request_arg(const struct httpd_request *rq, const char *key);

struct httpd_reply {
	unsigned status;	  /* 0: 500 */
	const char *content_type; /* a static string */
	const char *body;
	size_t len;
	bool owned; /* body was malloc'd: the endpoint frees it once sent */
	bool html;  /* add the page headers (Content-Security-Policy and friends) */
};
typedef void (*httpd_app_fn)(void *ctx, const struct httpd_request *rq, struct httpd_reply *r);

/*
 * Bind addr, listen and start serving (not ready, no metrics yet). On failure one line is
 * logged that says what to change, and -errno returned. The thread blocks every signal.
 */
int httpd__start(struct httpd **out, const struct sockaddr_storage *addr, socklen_t len);
/* As httpd__start, errors logged as those of option ("--ui-listen"), with app (may be
 * NULL) mounted alone from the first request on (see httpd__set_app). */
struct httpd_app {
	httpd_app_fn fn;
	void *ctx; /* must outlive httpd__stop */
};
int httpd__start_for(struct httpd **out, const struct sockaddr_storage *addr, socklen_t len,
		     const char *option, const struct httpd_app *app);
/* Mount fn (ctx) on the endpoint, before clients may use it; only: it answers every path
 * (no /metrics, /status, /healthz, /readyz). ctx must outlive httpd__stop. */
void httpd__set_app(struct httpd *h, httpd_app_fn fn, void *ctx, bool only);
/* Change HTTPD_APP_REPLY_BUDGET for this endpoint (tests). */
void httpd__set_reply_budget(struct httpd *h, size_t bytes);
/* The address bound (the port the kernel chose for port 0). */
const char *httpd__address(const struct httpd *h);
/* Make text[0..len) (malloc'd; the endpoint frees it) the answer to /metrics from now on,
 * and record that the loop is alive at now_ns (CLOCK_MONOTONIC). Never blocks on a client. */
void httpd__publish(struct httpd *h, char *text, size_t len, uint64_t now_ns);
/* /readyz answers 200 from now on (ready) or 503 (!ready). */
void httpd__set_ready(struct httpd *h, bool ready);
/* Read the endpoint's counters (any thread). */
void httpd__get_stats(struct httpd *h, struct httpd_stats *st);
/* Make text[0..len) (malloc'd; the endpoint frees it) the answer to /status from now on
 * (status.h). Never blocks on a client. */
void httpd__publish_status(struct httpd *h, char *text, size_t len);
/* The thresholds of /healthz (health.h); until called, the defaults. */
void httpd__set_health(struct httpd *h, const struct health_config *c);
/* What /healthz reads beyond the loop's heartbeat: sample(ctx, s) fills the ring and export
 * fields of s, called on the HTTP thread. NULL: nothing more. Once this returns, the
 * previous sample function is no longer running nor will be called. */
void httpd__set_health_source(struct httpd *h, void (*sample)(void *ctx, struct health_sample *s),
			      void *ctx);
/* Close every connection, stop the thread and free. NULL is ignored. */
void httpd__stop(struct httpd *h);

#endif
