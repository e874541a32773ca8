// SPDX-License-Identifier: BSD-2-Clause
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <microhttpd.h>

#include "log.h"
#include "privilege.h"
#include "text.h"

#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CONTENT_TYPE_TEXT "text/plain; charset=utf-8"
#define CONTENT_TYPE_JSON "application/json"
#define LISTEN_BACKLOG 128

/* A published rendering. Shared by the endpoint (while it is the current one) and by each
 * response that sends it; freed by whoever drops the last reference. */
struct snapshot {
	char *text;
	size_t len;
	unsigned refs; /* under httpd.lock */
	bool replaced; /* no longer current: counted in httpd.retained while referenced */
};

struct httpd {
	struct MHD_Daemon *daemon;
	pthread_mutex_t lock; /* current, retained, snapshot refs; held for no I/O */
	struct snapshot *current;
	struct snapshot *status; /* /status (status.h) */
	/* /healthz's thresholds and sample function (health.h), under lock */
	struct health_config health;
	void (*health_sample)(void *ctx, struct health_sample *s);
	void *health_ctx;
	size_t retained;	  /* bytes of replaced snapshots still referenced */
	uint64_t started_ns;	  /* CLOCK_MONOTONIC */
	uint64_t last_publish_ns; /* atomic; 0: never */
	int ready;		  /* atomic */
	struct httpd_stats st;	  /* atomic counters */
	char addr[HTTPD_ADDR_LEN];
	const char *option; /* the option that asked for it, for messages */
	/* the mounted application (httpd__set_app), under lock */
	httpd_app_fn app;
	void *app_ctx;
	bool app_only;
	/* bytes of the application's answers not yet sent whole (atomic), and their bound */
	size_t app_reply_bytes, app_reply_budget;
};

#define CNT_ADD(h, field, n) __atomic_add_fetch(&(h)->st.field, (n), __ATOMIC_RELAXED)
#define CNT_SUB(h, field, n) __atomic_sub_fetch(&(h)->st.field, (n), __ATOMIC_RELAXED)
#define CNT_GET(h, field) __atomic_load_n(&(h)->st.field, __ATOMIC_RELAXED)

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- the listen address ------------------------------------------------------------ */

static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 5)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

static int parse_v6(const char *s, struct sockaddr_storage *addr, socklen_t *len)
{
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)addr;
	const char *close = strchr(s, ']');
	char host[INET6_ADDRSTRLEN];
	size_t n;

	if (!close || close[1] != ':')
		return -EINVAL;
	n = (size_t)(close - (s + 1));
	if (n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s + 1, n);
	host[n] = '\0';
	a->sin6_family = AF_INET6;
	if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1 || parse_port(close + 2, &a->sin6_port))
		return -EINVAL;
	a->sin6_port = htons(a->sin6_port);
	*len = sizeof(*a);
	return 0;
}

int httpd_parse_listen(const char *s, struct sockaddr_storage *addr, socklen_t *len)
{
	struct sockaddr_in *a = (struct sockaddr_in *)addr;
	const char *colon;
	char host[INET_ADDRSTRLEN];
	size_t n;

	memset(addr, 0, sizeof(*addr));
	if (!s)
		return -EINVAL;
	if (s[0] == '[')
		return parse_v6(s, addr, len);
	a->sin_family = AF_INET;
	*len = sizeof(*a);
	colon = strchr(s, ':');
	if (!colon || colon == s) {
		/* PORT or :PORT: loopback, the safe default for an unauthenticated endpoint */
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else {
		n = (size_t)(colon - s);
		if (n >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, n);
		host[n] = '\0';
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
	}
	if (parse_port(colon ? colon + 1 : s, &a->sin_port))
		return -EINVAL;
	a->sin_port = htons(a->sin_port);
	return 0;
}

void httpd_format_addr(const struct sockaddr_storage *addr, char *out)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(out, HTTPD_ADDR_LEN, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)addr;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(out, HTTPD_ADDR_LEN, "%s:%u", host, ntohs(a->sin_port));
	}
}

/* ---- snapshots ----------------------------------------------------------------------- */

static void snapshot_free(struct snapshot *s)
{
	if (s) {
		free(s->text);
		free(s);
	}
}

/* Drop one reference (lock held); the snapshot to free when it was the last, else NULL. */
static struct snapshot *snapshot_unref_locked(struct httpd *h, struct snapshot *s)
{
	if (--s->refs)
		return NULL;
	if (s->replaced)
		h->retained -= s->len;
	return s;
}

struct release_ctx {
	struct httpd *h;
	struct snapshot *s;
};

/* A response that sent (or failed to send) a snapshot is gone: libmicrohttpd's free
 * callback, on the HTTP thread. */
static void release_snapshot(void *cls)
{
	struct release_ctx *rc = cls;
	struct snapshot *dead;

	pthread_mutex_lock(&rc->h->lock);
	dead = snapshot_unref_locked(rc->h, rc->s);
	pthread_mutex_unlock(&rc->h->lock);
	snapshot_free(dead);
	free(rc);
}

/* text[0..len) becomes the snapshot in *slot (h->current or h->status). 0 or -ENOMEM. */
static int publish_slot(struct httpd *h, struct snapshot **slot, char *text, size_t len)
{
	struct snapshot *s = malloc(sizeof(*s)), *dead = NULL, *old;

	if (!s) {
		free(text); /* the previous snapshot stays: it is a second older */
		return -ENOMEM;
	}
	*s = (struct snapshot){.text = text, .len = len, .refs = 1};
	pthread_mutex_lock(&h->lock);
	old = *slot;
	*slot = s;
	if (old) {
		old->replaced = true;
		h->retained += old->len; /* taken back by snapshot_unref_locked if last */
		dead = snapshot_unref_locked(h, old);
	}
	pthread_mutex_unlock(&h->lock);
	snapshot_free(dead);
	return 0;
}

void httpd__publish(struct httpd *h, char *text, size_t len, uint64_t now_ns)
{
	__atomic_store_n(&h->last_publish_ns, now_ns ? now_ns : 1, __ATOMIC_RELEASE);
	if (text && publish_slot(h, &h->current, text, len) == 0)
		__atomic_store_n(&h->st.snapshot_bytes, len, __ATOMIC_RELAXED);
}

void httpd__publish_status(struct httpd *h, char *text, size_t len)
{
	if (text)
		publish_slot(h, &h->status, text, len);
}

void httpd__set_health(struct httpd *h, const struct health_config *c)
{
	pthread_mutex_lock(&h->lock);
	h->health = *c;
	pthread_mutex_unlock(&h->lock);
}

void httpd__set_health_source(struct httpd *h, void (*sample)(void *ctx, struct health_sample *s),
			      void *ctx)
{
	pthread_mutex_lock(&h->lock);
	h->health_sample = sample;
	h->health_ctx = ctx;
	pthread_mutex_unlock(&h->lock);
}

void httpd__set_ready(struct httpd *h, bool ready)
{
	__atomic_store_n(&h->ready, ready, __ATOMIC_RELEASE);
}

/* ---- answers ------------------------------------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
			     const char *type)
{
	enum MHD_Result ret;

	if (!r)
		return MHD_NO; /* out of memory: libmicrohttpd closes the connection */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	/* a browser must take every answer for the type it says it is */
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r); /* the connection holds its own reference */
	return ret;
}

static enum MHD_Result answer_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);

	return queue(c, status, r, CONTENT_TYPE_TEXT);
}

/* The snapshot in *slot, referenced for a response; NULL (and why) when there is none to
 * give: none published yet, or slow readers hold too much already. */
static struct snapshot *take_slot(struct httpd *h, struct snapshot **slot, const char **why)
{
	struct snapshot *s;

	pthread_mutex_lock(&h->lock);
	s = *slot;
	if (!s)
		*why = "no metrics yet: the agent is starting\n";
	else if (h->retained > HTTPD_RETAINED_MAX)
		*why = "busy: too many slow scrapes in progress\n";
	if (s && !*why)
		s->refs++;
	else
		s = NULL;
	pthread_mutex_unlock(&h->lock);
	return s;
}

/* /metrics or /status: the latest snapshot of slot, shared by reference. */
static enum MHD_Result answer_snapshot(struct httpd *h, struct MHD_Connection *c,
				       struct snapshot **slot, const char *type, uint64_t *served)
{
	struct release_ctx *rc = malloc(sizeof(*rc));
	const char *why = NULL;
	struct MHD_Response *r;
	struct snapshot *s;

	if (!rc)
		return MHD_NO;
	s = take_slot(h, slot, &why);
	if (!s) {
		free(rc);
		CNT_ADD(h, requests_busy, why[0] == 'b');
		return answer_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, why);
	}
	*rc = (struct release_ctx){.h = h, .s = s};
	r = MHD_create_response_from_buffer_with_free_callback_cls(s->len, s->text,
								   release_snapshot, rc);
	if (!r) {
		release_snapshot(rc);
		return MHD_NO;
	}
	__atomic_add_fetch(served, 1, __ATOMIC_RELAXED);
	return queue(c, MHD_HTTP_OK, r, type);
}

/* Liveness (health.h): the loop's heartbeat, then (full) the rings and the exporter.
 * The sample function runs under the lock, so that clearing it waits for a call in
 * progress (it takes only the exporter's lock, never this one's holders' locks). */
static bool healthy(struct httpd *h, bool full, char *why, size_t cap)
{
	struct health_sample s = {
	    .now_ns = mono_ns(),
	    .started_ns = h->started_ns,
	    .loop_beat_ns = __atomic_load_n(&h->last_publish_ns, __ATOMIC_ACQUIRE),
	};
	struct health_config cfg;

	pthread_mutex_lock(&h->lock);
	cfg = h->health;
	if (full && h->health_sample)
		h->health_sample(h->health_ctx, &s);
	pthread_mutex_unlock(&h->lock);
	return health_check(&cfg, &s, why, cap);
}

static enum MHD_Result answer_health(struct httpd *h, struct MHD_Connection *c, bool readiness)
{
	char why[HEALTH_WHY_MAX + 2];
	struct MHD_Response *r;
	bool ok;

	if (readiness) {
		CNT_ADD(h, requests_readyz, 1);
		ok = __atomic_load_n(&h->ready, __ATOMIC_ACQUIRE) &&
		     healthy(h, false, why, sizeof(why));
		return answer_text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
				   ok ? "ready\n" : "not ready\n");
	}
	CNT_ADD(h, requests_healthz, 1);
	if (healthy(h, true, why, sizeof(why) - 1))
		return answer_text(c, MHD_HTTP_OK, "ok\n");
	strcat(why, "\n");
	r = MHD_create_response_from_buffer(strlen(why), why, MHD_RESPMEM_MUST_COPY);
	return queue(c, MHD_HTTP_SERVICE_UNAVAILABLE, r, CONTENT_TYPE_TEXT);
}

/* ---- the mounted application --------------------------------------------------------- */

/* The page headers: what the UI's pages may load and do. Scripts and styles only from their
 * own files on this endpoint (no inline script: text from traffic can never run), no
 * framing, no referrer sent, nothing fetched from elsewhere. */
#define UI_CSP                                                                                     \
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "             \
	"frame-ancestors 'none'"

void httpd__set_app(struct httpd *h, httpd_app_fn fn, void *ctx, bool only)
{
	pthread_mutex_lock(&h->lock);
	h->app = fn;
	h->app_ctx = ctx;
	h->app_only = only;
	pthread_mutex_unlock(&h->lock);
}

const char *httpd_request_arg(const struct httpd_request *rq, const char *key)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

void httpd__set_reply_budget(struct httpd *h, size_t bytes)
{
	__atomic_store_n(&h->app_reply_budget, bytes, __ATOMIC_RELAXED);
}

/* An answer of the application being sent: counted against the budget until freed. */
struct app_body {
	struct httpd *h;
	char *p;
	size_t len;
};

static ssize_t read_app_body(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct app_body *b = cls;
	size_t n;

	if (pos >= b->len)
		return MHD_CONTENT_READER_END_OF_STREAM;
	n = b->len - (size_t)pos < max ? b->len - (size_t)pos : max;
	memcpy(buf, b->p + pos, n);
	return (ssize_t)n;
}

static void free_app_body(void *cls)
{
	struct app_body *b = cls;

	__atomic_sub_fetch(&b->h->app_reply_bytes, b->len, __ATOMIC_RELAXED);
	free(b->p);
	free(b);
}

/* A malloc'd answer, or NULL when the answers still being sent (to clients that read them
 * slowly, or not at all) would pass the budget with it: the caller answers 503. body is
 * freed either way. */
static struct MHD_Response *owned_response(struct httpd *h, char *body, size_t len)
{
	struct app_body *b = NULL;
	struct MHD_Response *r = NULL;
	size_t out = __atomic_add_fetch(&h->app_reply_bytes, len, __ATOMIC_RELAXED);

	if (out <= __atomic_load_n(&h->app_reply_budget, __ATOMIC_RELAXED) &&
	    (b = malloc(sizeof(*b)))) {
		*b = (struct app_body){.h = h, .p = body, .len = len};
		r = MHD_create_response_from_callback(len, 64 * 1024, read_app_body, b,
						      free_app_body);
		if (r)
			return r;
	}
	__atomic_sub_fetch(&h->app_reply_bytes, len, __ATOMIC_RELAXED);
	free(b);
	free(body);
	return NULL;
}

/* The connection came from a loopback address: from a program of this host (a browser's
 * page among them), whatever address the endpoint is bound to. */
static bool client_is_loopback(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	if (sa && sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa && sa->sa_family == AF_INET6) {
		const struct in6_addr *x = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(x) ||
		       (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
	}
	return false;
}

/* The application's answer; it runs without the endpoint's lock (a slow query must never
 * hold up httpd__publish, which the event loop calls). */
static enum MHD_Result answer_app(struct httpd *h, httpd_app_fn fn, void *ctx,
				  struct MHD_Connection *c, const char *url)
{
	struct httpd_request rq = {
	    .url = url,
	    .host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
	    .conn = c,
	    .client_loopback = client_is_loopback(c),
	};
	struct httpd_reply rep = {0};
	struct MHD_Response *r;

	fn(ctx, &rq, &rep);
	if (!rep.body) {
		rep.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		rep.body = "internal error\n";
		rep.len = strlen(rep.body);
		rep.owned = false;
		rep.content_type = CONTENT_TYPE_TEXT;
	}
	if (rep.owned && !(r = owned_response(h, (char *)rep.body, rep.len))) {
		CNT_ADD(h, requests_other, 1);
		return answer_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
				   "busy: the answers still being sent are at their memory bound; "
				   "try again\n");
	}
	if (!rep.owned)
		r = MHD_create_response_from_buffer(rep.len, (void *)rep.body,
						    MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	if (rep.html) {
		MHD_add_response_header(r, "Content-Security-Policy", UI_CSP);
		MHD_add_response_header(r, "X-Frame-Options", "DENY");
		MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	}
	return queue(c, rep.status ? rep.status : MHD_HTTP_INTERNAL_SERVER_ERROR, r,
		     rep.content_type ? rep.content_type : CONTENT_TYPE_TEXT);
}

static bool own_path(const char *url)
{
	return !strcmp(url, "/metrics") || !strcmp(url, "/status") || !strcmp(url, "/healthz") ||
	       !strcmp(url, "/readyz");
}

/*
 * Every request is answered at its first call, before any body is read: no endpoint takes
 * one, so a body is never buffered (libmicrohttpd discards it, or closes the connection).
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct httpd *h = cls;
	httpd_app_fn app;
	void *app_ctx;
	bool only;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		struct MHD_Response *r = MHD_create_response_from_buffer(
		    sizeof("method not allowed\n") - 1, (void *)"method not allowed\n",
		    MHD_RESPMEM_PERSISTENT);

		CNT_ADD(h, requests_other, 1);
		if (r)
			MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
		return queue(c, MHD_HTTP_METHOD_NOT_ALLOWED, r, CONTENT_TYPE_TEXT);
	}
	pthread_mutex_lock(&h->lock);
	app = h->app;
	app_ctx = h->app_ctx;
	only = h->app_only;
	pthread_mutex_unlock(&h->lock);
	if (app && (only || !own_path(url)))
		return answer_app(h, app, app_ctx, c, url);
	if (strcmp(url, "/metrics") == 0)
		return answer_snapshot(h, c, &h->current, CONTENT_TYPE_METRICS,
				       &h->st.requests_metrics);
	if (strcmp(url, "/status") == 0)
		return answer_snapshot(h, c, &h->status, CONTENT_TYPE_JSON, &h->st.requests_status);
	if (strcmp(url, "/healthz") == 0)
		return answer_health(h, c, false);
	if (strcmp(url, "/readyz") == 0)
		return answer_health(h, c, true);
	CNT_ADD(h, requests_other, 1);
	return answer_text(c, MHD_HTTP_NOT_FOUND,
			   "not found: try /metrics, /status, /healthz or /readyz\n");
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct httpd *h = cls;

	(void)c;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		CNT_ADD(h, connections, 1);
		CNT_ADD(h, connections_open, 1);
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		CNT_SUB(h, connections_open, 1);
	}
}

/* libmicrohttpd's own messages (a client's malformed request, an accept failure): at -v
 * only, escaped, since they may quote what a client sent. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256], shown[256 * TEXT_ESC_MAX_PER_BYTE + 1];
	size_t n;

	(void)cls;
	if (log_get_level() < LOG_DEBUG)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		n--;
	text_escape_terminal(shown, sizeof(shown), msg, n, 0);
	log_debug("metrics endpoint: %s", shown);
}

/* ---- start and stop ------------------------------------------------------------------ */

static const char *bind_hint(int err)
{
	switch (err) {
	case EADDRINUSE:
		return " (another process listens there: choose another port)";
	case EACCES:
		return " (ports below 1024 need CAP_NET_BIND_SERVICE)";
	case EADDRNOTAVAIL:
		return " (not an address of this host)";
	default:
		return "";
	}
}

/* The listening socket, bound and listening; its fd, or -errno (logged, one line). */
static int open_listener(struct httpd *h, const struct sockaddr_storage *addr, socklen_t len)
{
	int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, zero = 0, err;
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);

	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		goto fail_close;
	/* [::] takes IPv4 clients too (as ::ffff:a.b.c.d), whatever the sysctl default */
	if (addr->ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)))
		goto fail_close;
	if (bind(fd, (const struct sockaddr *)addr, len) || listen(fd, LISTEN_BACKLOG))
		goto fail_close;
	if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
		httpd_format_addr(&bound, h->addr);
	return fd;
fail_close:
	err = errno;
	close(fd);
	errno = err;
fail:
	err = errno;
	log_error("%s: cannot listen on %s: %s%s", h->option, h->addr, strerror(err),
		  bind_hint(err));
	return -err;
}

static struct MHD_Daemon *start_daemon(struct httpd *h, int fd)
{
	return MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
				on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
				MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
				(unsigned)HTTPD_CONN_MAX, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				(unsigned)HTTPD_CONN_PER_IP, MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned)HTTPD_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				(size_t)HTTPD_CONN_MEMORY, MHD_OPTION_NOTIFY_CONNECTION,
				on_connection, h, MHD_OPTION_END);
}

struct starter {
	struct httpd *h;
	int fd;
	struct MHD_Daemon *daemon;
};

/* Runs in a thread of its own that first gives up every capability, so that the server's
 * thread, which it starts, inherits none: it parses what any local (or, bound to 0.0.0.0,
 * remote) client sends (privilege.h: only the loop thread keeps capabilities). */
static void *starter_main(void *arg)
{
	struct starter *st = arg;

	if (privilege__restrict(0) == 0)
		st->daemon = start_daemon(st->h, st->fd);
	return NULL;
}

/* Start libmicrohttpd on fd; NULL on failure. Its thread blocks every signal: the stop
 * signals go to the loop's signalfd, and a thread that took one (they are blocked in the
 * loop only once it starts) would end the agent before it flushes. */
static struct MHD_Daemon *start_server(struct httpd *h, int fd)
{
	struct starter st = {.h = h, .fd = fd};
	sigset_t all, old;
	pthread_t t;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&t, NULL, starter_main, &st);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return NULL;
	pthread_join(t, NULL);
	return st.daemon;
}

int httpd__start(struct httpd **out, const struct sockaddr_storage *addr, socklen_t len)
{
	return httpd__start_for(out, addr, len, "--metrics-listen", NULL);
}

int httpd__start_for(struct httpd **out, const struct sockaddr_storage *addr, socklen_t len,
		     const char *option, const struct httpd_app *app)
{
	struct httpd *h = calloc(1, sizeof(*h));
	int fd, err;

	*out = NULL;
	if (!h)
		return -ENOMEM;
	h->option = option;
	if (app) { /* mounted before the first client can connect */
		h->app = app->fn;
		h->app_ctx = app->ctx;
		h->app_only = true;
	}
	httpd_format_addr(addr, h->addr);
	h->started_ns = mono_ns();
	h->app_reply_budget = HTTPD_APP_REPLY_BUDGET;
	h->health = (struct health_config){.loop_stall_ns = HEALTH_LOOP_STALL_DEFAULT_NS,
					   .startup_ns = HEALTH_STARTUP_NS,
					   .export_stall_ns = HEALTH_EXPORT_STALL_NO_TIMEOUT_NS};
	err = -pthread_mutex_init(&h->lock, NULL);
	if (err) {
		free(h);
		return err;
	}
	fd = open_listener(h, addr, len);
	if (fd < 0) {
		err = fd;
		goto err_free;
	}
	h->daemon = start_server(h, fd);
	if (!h->daemon) {
		err = -EIO;
		log_error("%s: cannot start the HTTP server on %s", h->option, h->addr);
		close(fd);
		goto err_free;
	}
	*out = h;
	return 0;
err_free:
	pthread_mutex_destroy(&h->lock);
	free(h);
	return err;
}

const char *httpd__address(const struct httpd *h)
{
	return h->addr;
}

void httpd__get_stats(struct httpd *h, struct httpd_stats *st)
{
	st->requests_metrics = CNT_GET(h, requests_metrics);
	st->requests_healthz = CNT_GET(h, requests_healthz);
	st->requests_readyz = CNT_GET(h, requests_readyz);
	st->requests_other = CNT_GET(h, requests_other);
	st->requests_busy = CNT_GET(h, requests_busy);
	st->connections = CNT_GET(h, connections);
	st->connections_open = CNT_GET(h, connections_open);
	st->snapshot_bytes = CNT_GET(h, snapshot_bytes);
	st->requests_status = CNT_GET(h, requests_status);
	pthread_mutex_lock(&h->lock);
	st->retained_bytes = h->retained;
	pthread_mutex_unlock(&h->lock);
}

void httpd__stop(struct httpd *h)
{
	if (!h)
		return;
	/* closes the connections and the listener, joins the thread; responses are freed, and
	 * with them the references to their snapshots */
	MHD_stop_daemon(h->daemon);
	snapshot_free(h->current);
	snapshot_free(h->status);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
