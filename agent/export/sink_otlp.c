// SPDX-License-Identifier: BSD-2-Clause
/*
 * OTLP sink: a bounded ring of spans between the event loop and one export thread.
 *
 * The loop thread only takes the lock to push a pointer (and, when the ring is full, to pop
 * the oldest one, freed after unlocking). The export thread sleeps on a condition variable
 * until a batch is full, the schedule delay of the oldest queued span has passed, or a flush
 * or stop is asked; it then encodes, gzips and sends the batch without holding the lock.
 * A batch that fails transiently is sent again with exponential backoff and jitter (or
 * after the server's Retry-After) for as long as the queue has room; once newer spans are
 * being dropped and the batch has been retried for OTEL_BSP_EXPORT_TIMEOUT, the batch, being
 * the oldest data, is what goes. Memory is bounded by the ring plus one batch in flight.
 */
#include "sink_otlp.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "otlp_encode.h"
#include "otlp_gzip.h"
#include "otlp_transport.h"
#include "span.h"
#include "stats.h"

#define BACKOFF_INITIAL_MS 500
#define BACKOFF_MAX_MS 5000
/* A Retry-After beyond this is obeyed only up to it: the queue keeps filling meanwhile. */
#define RETRY_AFTER_MAX_MS 60000
/* zlib level 1: about twice the spans/s of level 6 for 6% more bytes (otlp_bench.c) */
#define GZIP_LEVEL 1
#define SEEN_MAX 32

struct sink_otlp {
	struct sink base;

	pthread_mutex_t lock;
	pthread_cond_t wake; /* to the export thread: work, flush, stop */
	pthread_cond_t idle; /* to flush(): queue drained, nothing in flight */
	pthread_t thread;
	bool thread_started;
	bool sync_ready;

	/* protected by lock */
	struct span **ring;
	size_t cap;
	size_t head;
	size_t count;
	bool stop;
	bool busy;		 /* a batch is being exported */
	bool expired;		 /* the flush deadline passed: drop, do not send */
	uint64_t flush_deadline; /* CLOCK_MONOTONIC ns; 0: not flushing */

	/* fixed after creation */
	size_t max_batch;
	uint64_t delay_ns;
	uint64_t export_timeout_ns;
	bool gzip;
	char *url;
	const char *protocol;

	/* export thread only */
	struct otlp_encoder *enc;
	struct otlp_gzip *gz;
	struct otlp_transport *tr;
	struct otlp_buf raw;
	struct otlp_buf packed;
	struct span **batch;
	uint64_t rng;
	unsigned failing; /* consecutive transient failures */
	unsigned nseen;
	int seen[SEEN_MAX]; /* failure kinds already logged at error level */

	/* updated with atomics: read by print_stats on the loop thread */
	struct sink_otlp_stats st;
};

#define CNT_ADD(sk, field, n) __atomic_add_fetch(&(sk)->st.field, (n), __ATOMIC_RELAXED)
#define CNT_GET(sk, field) __atomic_load_n(&(sk)->st.field, __ATOMIC_RELAXED)

static struct sink_otlp *to_otlp(struct sink *sk)
{
	return (struct sink_otlp *)sk;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct timespec to_timespec(uint64_t ns)
{
	return (struct timespec){.tv_sec = (time_t)(ns / 1000000000ull),
				 .tv_nsec = (long)(ns % 1000000000ull)};
}

/* Sleep on c until the monotonic time at_ns (the condvar is set to CLOCK_MONOTONIC). */
static void wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t at_ns)
{
	struct timespec ts = to_timespec(at_ns);

	pthread_cond_timedwait(c, m, &ts);
}

/* ---- event loop side ------------------------------------------------------------------- */

static void otlp_emit(struct sink *base, struct span *s)
{
	struct sink_otlp *sk = to_otlp(base);
	struct span *victim = NULL;

	pthread_mutex_lock(&sk->lock);
	if (sk->count == sk->cap) {
		victim = sk->ring[sk->head];
		sk->head = (sk->head + 1) % sk->cap;
		sk->count--;
	}
	sk->ring[(sk->head + sk->count) % sk->cap] = s;
	sk->count++;
	/* wake the exporter to start the schedule-delay clock, or because a batch is ready */
	if (sk->count == 1 || sk->count == sk->max_batch)
		pthread_cond_signal(&sk->wake);
	pthread_mutex_unlock(&sk->lock);
	if (victim) {
		CNT_ADD(sk, dropped_queue_full, 1);
		STAT_INC(drop_sink_queue_full);
		span_free(victim);
	}
}

static void otlp_tick(struct sink *base, uint64_t now_ns)
{
	/* the export thread keeps its own time */
	(void)base;
	(void)now_ns;
}

static void otlp_flush(struct sink *base, int deadline_ms)
{
	struct sink_otlp *sk = to_otlp(base);
	uint64_t deadline = mono_ns() + (uint64_t)(deadline_ms > 0 ? deadline_ms : 0) * 1000000ull;
	uint64_t dropped = CNT_GET(sk, dropped_shutdown);

	pthread_mutex_lock(&sk->lock);
	sk->flush_deadline = deadline;
	pthread_cond_signal(&sk->wake);
	while ((sk->count || sk->busy) && !sk->stop && mono_ns() < deadline)
		wait_until(&sk->idle, &sk->lock, deadline);
	if ((sk->count || sk->busy) && !sk->stop) {
		/*
		 * Out of time: end the request in flight (it may have started before the flush,
		 * without the deadline) and let the thread count the rest as dropped, so that
		 * the exit summary printed next is complete.
		 */
		sk->expired = true;
		pthread_cond_signal(&sk->wake);
		pthread_mutex_unlock(&sk->lock);
		otlp_transport__abort(sk->tr, true);
		pthread_mutex_lock(&sk->lock);
		while ((sk->count || sk->busy) && !sk->stop)
			pthread_cond_wait(&sk->idle, &sk->lock);
		pthread_mutex_unlock(&sk->lock);
		otlp_transport__abort(sk->tr, false);
		pthread_mutex_lock(&sk->lock);
		sk->expired = false;
	}
	sk->flush_deadline = 0;
	pthread_mutex_unlock(&sk->lock);
	dropped = CNT_GET(sk, dropped_shutdown) - dropped;
	if (dropped)
		log_warn("otlp: %" PRIu64 " spans not exported within the %d ms flush deadline "
			 "(collector %s)",
			 dropped, deadline_ms, sk->url);
}

/* ---- export thread --------------------------------------------------------------------- */

static uint64_t rng_next(struct sink_otlp *sk)
{
	/* xorshift64: jitter only needs to differ between agents, not to be secret */
	sk->rng ^= sk->rng << 13;
	sk->rng ^= sk->rng >> 7;
	sk->rng ^= sk->rng << 17;
	return sk->rng;
}

/* Exponential backoff with "equal jitter": half the step fixed, half random. */
static uint64_t backoff_ms(struct sink_otlp *sk, unsigned attempt)
{
	uint64_t step = BACKOFF_INITIAL_MS;

	while (attempt-- && step < BACKOFF_MAX_MS)
		step *= 2;
	if (step > BACKOFF_MAX_MS)
		step = BACKOFF_MAX_MS;
	return step / 2 + rng_next(sk) % (step / 2 + 1);
}

/* Log a failure kind at error level the first time, then at debug level. */
static bool first_of_kind(struct sink_otlp *sk, int kind)
{
	for (unsigned i = 0; i < sk->nseen; i++)
		if (sk->seen[i] == kind)
			return false;
	if (sk->nseen < SEEN_MAX)
		sk->seen[sk->nseen++] = kind;
	return true;
}

static const char *failure_hint(const struct otlp_result *r)
{
	switch (r->http_status) {
	case 400:
		return "the receiver could not parse the data";
	case 401:
	case 403:
		return "check the credentials in OTEL_EXPORTER_OTLP_HEADERS";
	case 404:
		return "check the endpoint: OTLP/HTTP receivers serve POST /v1/traces";
	case 413:
		return "lower OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
	case 415:
		return "the receiver does not take application/x-protobuf";
	}
	switch (r->grpc_status) {
	case 3:
		return "the receiver could not parse the data";
	case 7:
	case 16:
		return "check the credentials in OTEL_EXPORTER_OTLP_HEADERS";
	case 12:
		return "the endpoint does not serve OTLP traces over gRPC";
	}
	if (r->curl_code)
		return "check the endpoint URL and OTEL_EXPORTER_OTLP_CERTIFICATE / CLIENT_*";
	return "the receiver refused the data";
}

static void describe(const struct otlp_result *r, char *buf, size_t len)
{
	if (r->grpc_status >= 0)
		snprintf(buf, len, "gRPC status %d %s%s%s", r->grpc_status,
			 otlp_grpc_status_name(r->grpc_status), r->message[0] ? ": " : "",
			 r->message);
	else if (r->http_status)
		snprintf(buf, len, "HTTP %ld%s%s", r->http_status, r->message[0] ? ": " : "",
			 r->message);
	else
		snprintf(buf, len, "%s", r->message);
}

static void report_permanent(struct sink_otlp *sk, const struct otlp_result *r, size_t n)
{
	int kind = r->grpc_status >= 0 ? 1000 + r->grpc_status
		   : r->http_status    ? (int)r->http_status
				       : 2000 + r->curl_code;
	char what[384];

	describe(r, what, sizeof(what));
	if (first_of_kind(sk, kind))
		log_error("otlp: export to %s failed permanently (%s): %s; %zu spans dropped, "
			  "not retried (further failures of this kind are logged at debug level)",
			  sk->url, what, failure_hint(r), n);
	else
		log_debug("otlp: export failed (%s): %zu spans dropped", what, n);
}

static void report_success(struct sink_otlp *sk, const struct otlp_result *r, size_t n)
{
	if (sk->failing) {
		log_info("otlp: export to %s works again after %u failed attempts", sk->url,
			 sk->failing);
		sk->failing = 0;
	}
	if (r->rejected > 0 || r->message[0]) {
		/* partial success: rejected spans are counted, the message is the server's */
		if (first_of_kind(sk, 3000))
			log_warn("otlp: receiver accepted a batch partially: %" PRId64
				 " of %zu spans rejected%s%s",
				 r->rejected, n, r->message[0] ? ": " : "", r->message);
		else
			log_debug("otlp: partial success: %" PRId64 " rejected: %s", r->rejected,
				  r->message);
	}
}

static void report_transient(struct sink_otlp *sk, const struct otlp_result *r, uint64_t delay)
{
	char what[384];

	describe(r, what, sizeof(what));
	if (!sk->failing++)
		log_warn("otlp: export to %s failed (%s); retrying with backoff, spans stay "
			 "queued (up to %zu)",
			 sk->url, what, sk->cap);
	else
		log_debug("otlp: export failed again (%s), retry in %" PRIu64 " ms", what, delay);
}

enum verdict {
	V_RETRY,
	V_GIVE_UP_SHUTDOWN,
	V_GIVE_UP_PRESSURE,
};

/*
 * Wait out a retry delay, unless a stop, a flush deadline or queue pressure says the batch
 * should go. Called and returns without the lock.
 */
static enum verdict retry_wait(struct sink_otlp *sk, uint64_t delay_ms, uint64_t first_ns,
			       uint64_t drops_at_start)
{
	enum verdict v = V_RETRY;
	uint64_t until = mono_ns() + delay_ms * 1000000ull;

	pthread_mutex_lock(&sk->lock);
	for (;;) {
		uint64_t now = mono_ns();

		if (sk->stop || (sk->flush_deadline && until >= sk->flush_deadline)) {
			v = V_GIVE_UP_SHUTDOWN;
			break;
		}
		if (CNT_GET(sk, dropped_queue_full) != drops_at_start &&
		    now - first_ns >= sk->export_timeout_ns) {
			v = V_GIVE_UP_PRESSURE;
			break;
		}
		if (now >= until)
			break;
		wait_until(&sk->wake, &sk->lock, until);
	}
	pthread_mutex_unlock(&sk->lock);
	return v;
}

static uint64_t current_deadline(struct sink_otlp *sk)
{
	uint64_t d;

	pthread_mutex_lock(&sk->lock);
	d = sk->flush_deadline;
	pthread_mutex_unlock(&sk->lock);
	return d;
}

static const struct otlp_buf *encode_batch(struct sink_otlp *sk, size_t n)
{
	int err = otlp_encoder__encode(sk->enc, sk->batch, n, &sk->raw);

	if (!err && sk->gzip)
		err = otlp_gzip__compress(sk->gz, otlp_buf_payload(&sk->raw), sk->raw.len,
					  &sk->packed);
	if (err) {
		if (first_of_kind(sk, 4000))
			log_error("otlp: cannot encode a batch of %zu spans: %s; batch dropped", n,
				  strerror(-err));
		return NULL;
	}
	return sk->gzip ? &sk->packed : &sk->raw;
}

static void export_batch(struct sink_otlp *sk, size_t n, uint64_t drops_at_start)
{
	const struct otlp_buf *body = encode_batch(sk, n);
	uint64_t first_ns = mono_ns();
	struct otlp_result res;
	unsigned attempt = 0;

	while (body) {
		uint64_t delay;
		enum verdict v;

		otlp_transport__send(sk->tr, (struct otlp_buf *)body, current_deadline(sk), &res);
		CNT_ADD(sk, requests, 1);
		CNT_ADD(sk, bytes_sent, res.bytes_sent);
		if (res.outcome == OTLP_OK) {
			int64_t rej = res.rejected < 0		   ? 0
				      : (uint64_t)res.rejected > n ? (int64_t)n
								   : res.rejected;

			CNT_ADD(sk, exported, n - (uint64_t)rej);
			CNT_ADD(sk, rejected, (uint64_t)rej);
			report_success(sk, &res, n);
			break;
		}
		if (res.outcome == OTLP_FAIL) {
			CNT_ADD(sk, failed, n);
			report_permanent(sk, &res, n);
			break;
		}
		delay = res.retry_after_ms >= 0 ? (uint64_t)res.retry_after_ms
						: backoff_ms(sk, attempt);
		if (delay > RETRY_AFTER_MAX_MS)
			delay = RETRY_AFTER_MAX_MS;
		attempt++;
		if (!res.aborted)
			report_transient(sk, &res, delay);
		v = retry_wait(sk, delay, first_ns, drops_at_start);
		if (v == V_GIVE_UP_SHUTDOWN) {
			CNT_ADD(sk, dropped_shutdown, n);
			break;
		}
		if (v == V_GIVE_UP_PRESSURE) {
			CNT_ADD(sk, dropped_queue_full, n);
			log_debug("otlp: queue full while retrying: oldest batch of %zu dropped",
				  n);
			break;
		}
		CNT_ADD(sk, retried, 1);
	}
	if (!body)
		CNT_ADD(sk, failed, n);
}

static void free_batch(struct sink_otlp *sk, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		span_free(sk->batch[i]);
		sk->batch[i] = NULL;
	}
}

/* Sleep until a batch should go; false when told to stop. Called with the lock held. */
static bool wait_for_batch(struct sink_otlp *sk, uint64_t *due)
{
	for (;;) {
		uint64_t now;

		if (sk->stop)
			return false;
		if (!sk->count) {
			*due = 0;
			pthread_cond_broadcast(&sk->idle);
			pthread_cond_wait(&sk->wake, &sk->lock);
			continue;
		}
		now = mono_ns();
		if (!*due)
			*due = now + sk->delay_ns;
		if (sk->count >= sk->max_batch || sk->flush_deadline || now >= *due)
			return true;
		wait_until(&sk->wake, &sk->lock, *due);
	}
}

static void *export_main(void *arg)
{
	struct sink_otlp *sk = arg;
	uint64_t due = 0;

	pthread_mutex_lock(&sk->lock);
	while (wait_for_batch(sk, &due)) {
		size_t n = sk->count < sk->max_batch ? sk->count : sk->max_batch;
		uint64_t drops = CNT_GET(sk, dropped_queue_full);

		bool expired = sk->expired;

		for (size_t i = 0; i < n; i++) {
			sk->batch[i] = sk->ring[sk->head];
			sk->head = (sk->head + 1) % sk->cap;
		}
		sk->count -= n;
		sk->busy = true;
		pthread_mutex_unlock(&sk->lock);

		if (expired)
			CNT_ADD(sk, dropped_shutdown, n);
		else
			export_batch(sk, n, drops);
		free_batch(sk, n);

		pthread_mutex_lock(&sk->lock);
		sk->busy = false;
		/* what arrived meanwhile waits its own delay, unless a full batch is ready */
		due = sk->count ? mono_ns() + sk->delay_ns : 0;
		pthread_cond_broadcast(&sk->idle);
	}
	sk->busy = false;
	pthread_cond_broadcast(&sk->idle);
	pthread_mutex_unlock(&sk->lock);
	return NULL;
}

/* ---- the rest of the sink interface ---------------------------------------------------- */

void sink_otlp_get_stats(struct sink *base, struct sink_otlp_stats *st)
{
	struct sink_otlp *sk = to_otlp(base);

	st->exported = CNT_GET(sk, exported);
	st->rejected = CNT_GET(sk, rejected);
	st->failed = CNT_GET(sk, failed);
	st->retried = CNT_GET(sk, retried);
	st->dropped_queue_full = CNT_GET(sk, dropped_queue_full);
	st->dropped_shutdown = CNT_GET(sk, dropped_shutdown);
	st->requests = CNT_GET(sk, requests);
	st->bytes_sent = CNT_GET(sk, bytes_sent);
	pthread_mutex_lock(&sk->lock);
	st->queued = sk->count;
	pthread_mutex_unlock(&sk->lock);
}

static void otlp_print_stats(struct sink *base, FILE *out)
{
	struct sink_otlp *sk = to_otlp(base);
	struct sink_otlp_stats st;

	sink_otlp_get_stats(base, &st);
	fprintf(out, "  otlp: %s %s%s\n", sk->protocol, sk->url, sk->gzip ? " (gzip)" : "");
#define ROW(name, desc) fprintf(out, "  %-28s %12" PRIu64 "  %s\n", "otlp_" #name, st.name, desc)
	ROW(exported, "spans accepted by the receiver");
	ROW(rejected, "spans rejected by the receiver (partial success)");
	ROW(failed, "spans dropped after a permanent export failure");
	ROW(retried, "export requests retried after a transient failure");
	ROW(dropped_queue_full, "spans dropped: export queue full (oldest first)");
	ROW(dropped_shutdown, "spans dropped: flush deadline passed");
	ROW(queued, "spans still queued");
	ROW(requests, "export requests sent");
	ROW(bytes_sent, "request bytes sent");
#undef ROW
}

static void free_queued(struct sink_otlp *sk)
{
	for (; sk->count; sk->count--) {
		span_free(sk->ring[sk->head]);
		sk->head = (sk->head + 1) % sk->cap;
	}
}

static void otlp_destroy(struct sink *base)
{
	struct sink_otlp *sk = to_otlp(base);
	size_t left;

	if (sk->thread_started) {
		pthread_mutex_lock(&sk->lock);
		sk->stop = true;
		pthread_cond_broadcast(&sk->wake);
		pthread_mutex_unlock(&sk->lock);
		otlp_transport__abort(sk->tr, true);
		pthread_join(sk->thread, NULL);
	}
	left = sk->count;
	if (left) {
		CNT_ADD(sk, dropped_shutdown, left);
		log_debug("otlp: %zu queued spans discarded at exit", left);
	}
	free_queued(sk);
	otlp_transport_free(sk->tr);
	otlp_encoder_free(sk->enc);
	otlp_gzip_free(sk->gz);
	otlp_buf_free(&sk->raw);
	otlp_buf_free(&sk->packed);
	if (sk->sync_ready) {
		pthread_cond_destroy(&sk->wake);
		pthread_cond_destroy(&sk->idle);
		pthread_mutex_destroy(&sk->lock);
	}
	free(sk->batch);
	free(sk->ring);
	free(sk->url);
	free(sk);
}

static int init_sync(struct sink_otlp *sk)
{
	pthread_condattr_t ca;
	int err;

	err = pthread_condattr_init(&ca);
	/* timed waits on the monotonic clock: a wall-clock step must not stall exports */
	err = err ?: pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	err = err ?: pthread_cond_init(&sk->wake, &ca);
	err = err ?: pthread_cond_init(&sk->idle, &ca);
	err = err ?: pthread_mutex_init(&sk->lock, NULL);
	pthread_condattr_destroy(&ca);
	return -err;
}

/*
 * The loop reads SIGINT/SIGTERM from a signalfd, which works only if no thread can take them:
 * a process-directed signal goes to any thread that does not block it, and its default
 * action ends the whole agent, unflushed. The loop blocks them in its own thread only, and
 * later than this one starts, so the export thread (and the resolver threads libcurl starts
 * from it, which inherit its mask) is created with every signal blocked.
 */
static int start_export_thread(struct sink_otlp *sk)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&sk->thread, NULL, export_main, sk);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
}

struct sink *sink_otlp_new(const struct otlp_config *cfg)
{
	struct sink_otlp *sk = calloc(1, sizeof(*sk));
	size_t by_bytes;
	char msg[512] = "";
	int err;

	if (!sk) {
		log_error("otlp: out of memory");
		return NULL;
	}
	sk->base = (struct sink){.name = "otlp",
				 .emit = otlp_emit,
				 .tick = otlp_tick,
				 .flush = otlp_flush,
				 .print_stats = otlp_print_stats,
				 .destroy = otlp_destroy};
	/* every queued span holds a whole struct span: the byte budget is a cap on the count */
	by_bytes = cfg->max_queue_bytes / sizeof(struct span);
	sk->cap = (size_t)cfg->max_queue_size;
	if (by_bytes < sk->cap)
		sk->cap = by_bytes ? by_bytes : 1;
	sk->max_batch = (size_t)cfg->max_batch_size;
	if (sk->max_batch > sk->cap)
		sk->max_batch = sk->cap;
	sk->delay_ns = (uint64_t)cfg->schedule_delay_ms * 1000000ull;
	sk->export_timeout_ns = (uint64_t)cfg->export_timeout_ms * 1000000ull;
	sk->gzip = cfg->gzip;
	sk->protocol = otlp_protocol_name(cfg->protocol);
	sk->rng = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)sk;
	if (!sk->rng)
		sk->rng = 1;
	sk->url = strdup(cfg->url ? cfg->url : "");
	sk->ring = calloc(sk->cap, sizeof(*sk->ring));
	sk->batch = calloc(sk->max_batch, sizeof(*sk->batch));
	sk->enc = otlp_encoder_new(cfg->resource, cfg->nresource);
	sk->gz = cfg->gzip ? otlp_gzip_new(GZIP_LEVEL) : NULL;
	if (!sk->url || !sk->ring || !sk->batch || !sk->enc || (cfg->gzip && !sk->gz)) {
		snprintf(msg, sizeof(msg), "out of memory");
		goto err_free;
	}
	if (init_sync(sk)) {
		snprintf(msg, sizeof(msg), "cannot initialise locks");
		goto err_free;
	}
	sk->sync_ready = true;
	sk->tr = otlp_transport_new(cfg, msg, sizeof(msg));
	if (!sk->tr)
		goto err_free;
	err = start_export_thread(sk);
	if (err) {
		snprintf(msg, sizeof(msg), "cannot start the export thread: %s", strerror(err));
		goto err_free;
	}
	sk->thread_started = true;
	log_debug("otlp: exporting to %s over %s%s, queue %zu spans, batch %zu, delay %d ms",
		  sk->url, sk->protocol, sk->gzip ? " with gzip" : "", sk->cap, sk->max_batch,
		  cfg->schedule_delay_ms);
	return &sk->base;

err_free:
	log_error("otlp: %s", msg);
	otlp_destroy(&sk->base);
	return NULL;
}
