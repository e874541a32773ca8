// SPDX-License-Identifier: BSD-2-Clause
/*
 * OTLP sink: a bounded ring of spans between the event loop and a pool of export workers.
 *
 * The loop thread only takes the lock to push a pointer (and, when the ring is full, to pop
 * the oldest one, freed after unlocking). Each worker has its own encoder, gzip stream,
 * transport (libcurl handle, so its own connection) and batch; they take batches from the
 * one ring under the lock and encode, gzip and send without it. One synchronous request at a
 * time caps a single sender at batch / round trip (512 spans 20 ms away: 25k spans/s), so
 * several requests are kept in flight, as otelcol's exporterhelper does (num_consumers).
 *
 * When a worker may take a batch:
 *   - a full one (max_batch spans queued): always, by as many workers as there are full
 *     batches;
 *   - a partial one: once the oldest queued span has waited the schedule delay, and only if
 *     no other partial batch is in flight, so that a trickle of spans does not become many
 *     tiny requests (what arrives meanwhile goes in the next one);
 *   - anything, at once, while flushing.
 * Idle workers sleep on `work` without a timeout, except one at most (timer_armed), which
 * sleeps until the oldest span is due. Waking is by signal: emit() wakes one worker when a
 * batch fills or when the queue stops being empty with no timer armed, and a worker that
 * takes a batch and leaves work behind wakes the next one. Only flush and stop broadcast.
 *
 * A batch that fails transiently is sent again with exponential backoff and jitter (or after
 * the server's Retry-After) for as long as the queue has room; once newer spans are being
 * dropped and the batch has been retried for OTEL_BSP_EXPORT_TIMEOUT, the batch, being the
 * oldest data, is what goes. Memory is bounded by the ring plus one encoded batch per
 * worker (spans are freed once encoded).
 */
#include "sink_otlp.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "otlp_encode.h"
#include "otlp_gzip.h"
#include "otlp_transport.h"
#include "privilege.h"
#include "span.h"
#include "stats.h"
#include "text.h"

#define BACKOFF_INITIAL_MS 500
#define BACKOFF_MAX_MS 5000
/* A Retry-After beyond this is obeyed only up to it: the queue keeps filling meanwhile. */
#define RETRY_AFTER_MAX_MS 60000
/* zlib level 1: about twice the spans/s of level 6 for 6% more bytes (otlp_bench.c) */
#define GZIP_LEVEL 1
#define SEEN_MAX 32

struct sink_otlp;

/* One export worker: everything a request needs, owned by its thread. */
struct exporter {
	struct sink_otlp *sk;
	unsigned id;
	pthread_t thread;
	bool started;
	struct otlp_encoder *enc;
	struct otlp_gzip *gz;
	struct otlp_transport *tr;
	struct otlp_buf raw;
	struct otlp_buf packed;
	struct span **batch;
	uint64_t rng;
};

struct sink_otlp {
	struct sink base;

	pthread_mutex_t lock;
	pthread_cond_t work;	/* to idle workers: a batch, the delay timer, flush, stop */
	pthread_cond_t retry;	/* to workers waiting out a backoff: flush, stop */
	pthread_cond_t drained; /* to flush(): queue empty, nothing in flight */
	bool sync_ready;

	/* protected by lock */
	struct span **ring;
	uint64_t *queued_ns; /* CLOCK_MONOTONIC time each ring slot's span was queued */
	size_t cap;
	size_t head;
	size_t count;
	unsigned inflight; /* workers holding a batch */
	unsigned partials; /* of which batches taken before they were full */
	bool timer_armed;  /* a worker sleeps until the oldest span is due */
	bool stop;
	bool expired;		 /* the flush deadline passed: drop, do not send */
	uint64_t flush_deadline; /* CLOCK_MONOTONIC ns; 0: not flushing */
	/*
	 * Spans emit() pushed out of the full ring: the pressure that makes a retried batch
	 * give way. Not dropped_queue_full, which also counts the batches given up: one worker
	 * giving up would make every other worker's batch, the newest data too, look pressed.
	 */
	uint64_t evicted;
	uint64_t inflight_spans; /* spans of the batches workers hold */
	uint64_t busy_since_ns;	 /* when count + inflight_spans last left 0 */
	unsigned nseen;
	int seen[SEEN_MAX]; /* failure kinds already logged at error level */

	/* fixed after creation */
	size_t max_batch;
	uint64_t delay_ns;
	uint64_t export_timeout_ns;
	bool gzip;
	char *url; /* as logs show it: no userinfo, no query (text_url_for_log) */
	const char *protocol;
	unsigned nworkers;
	struct exporter *workers;

	/* atomic: consecutive transient failures, whichever worker saw them */
	unsigned failing;
	/* atomic: CLOCK_MONOTONIC ns at which the last export attempt finished, whatever its
	 * result (answered, refused, timed out): the exporter made progress (health.h) */
	uint64_t last_progress_ns;
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

/* Sleep on c until the monotonic time at_ns (the condvars are set to CLOCK_MONOTONIC). */
static void wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t at_ns)
{
	struct timespec ts = to_timespec(at_ns);

	pthread_cond_timedwait(c, m, &ts);
}

/* Abort (on) or re-enable (off) the requests of every worker. */
static void abort_all(struct sink_otlp *sk, bool on)
{
	for (unsigned i = 0; i < sk->nworkers; i++)
		if (sk->workers[i].tr)
			otlp_transport__abort(sk->workers[i].tr, on);
}

/* ---- event loop side ------------------------------------------------------------------- */

static void otlp_emit(struct sink *base, struct span *s)
{
	struct sink_otlp *sk = to_otlp(base);
	uint64_t now = mono_ns();
	struct span *victim = NULL;
	size_t tail;

	pthread_mutex_lock(&sk->lock);
	if (!sk->count && !sk->inflight_spans)
		sk->busy_since_ns = now;
	if (sk->count == sk->cap) {
		victim = sk->ring[sk->head];
		sk->head = (sk->head + 1) % sk->cap;
		sk->count--;
		sk->evicted++;
	}
	tail = (sk->head + sk->count) % sk->cap;
	sk->ring[tail] = s;
	sk->queued_ns[tail] = now;
	sk->count++;
	/* one worker: a batch is ready, or the schedule-delay clock has nobody to keep it */
	if (sk->count == sk->max_batch || (sk->count == 1 && !sk->timer_armed && !sk->partials))
		pthread_cond_signal(&sk->work);
	pthread_mutex_unlock(&sk->lock);
	if (victim) {
		CNT_ADD(sk, dropped_queue_full, 1);
		STAT_INC(drop_sink_queue_full);
		span_free(victim);
	}
}

static void otlp_tick(struct sink *base, uint64_t now_ns)
{
	/* the export workers keep their own time */
	(void)base;
	(void)now_ns;
}

static bool drained(const struct sink_otlp *sk)
{
	return !sk->count && !sk->inflight;
}

static void otlp_flush(struct sink *base, int deadline_ms)
{
	struct sink_otlp *sk = to_otlp(base);
	uint64_t deadline = mono_ns() + (uint64_t)(deadline_ms > 0 ? deadline_ms : 0) * 1000000ull;
	uint64_t dropped = CNT_GET(sk, dropped_shutdown);

	pthread_mutex_lock(&sk->lock);
	sk->flush_deadline = deadline;
	/* every idle worker takes a batch; a backoff ending after the deadline is given up */
	pthread_cond_broadcast(&sk->work);
	pthread_cond_broadcast(&sk->retry);
	while (!drained(sk) && !sk->stop && mono_ns() < deadline)
		wait_until(&sk->drained, &sk->lock, deadline);
	if (!drained(sk) && !sk->stop) {
		/*
		 * Out of time: end the requests in flight (they may have started before the
		 * flush, without the deadline) and let the workers count the rest as dropped,
		 * so that the exit summary printed next is complete.
		 */
		sk->expired = true;
		pthread_cond_broadcast(&sk->work);
		pthread_cond_broadcast(&sk->retry);
		pthread_mutex_unlock(&sk->lock);
		abort_all(sk, true);
		pthread_mutex_lock(&sk->lock);
		while (!drained(sk) && !sk->stop)
			pthread_cond_wait(&sk->drained, &sk->lock);
		pthread_mutex_unlock(&sk->lock);
		abort_all(sk, false);
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

/* ---- export workers -------------------------------------------------------------------- */

static uint64_t rng_next(struct exporter *ex)
{
	/* xorshift64: jitter only needs to differ between agents and workers, not be secret */
	ex->rng ^= ex->rng << 13;
	ex->rng ^= ex->rng >> 7;
	ex->rng ^= ex->rng << 17;
	return ex->rng;
}

/* Exponential backoff with "equal jitter": half the step fixed, half random. */
static uint64_t backoff_ms(struct exporter *ex, unsigned attempt)
{
	uint64_t step = BACKOFF_INITIAL_MS;

	while (attempt-- && step < BACKOFF_MAX_MS)
		step *= 2;
	if (step > BACKOFF_MAX_MS)
		step = BACKOFF_MAX_MS;
	return step / 2 + rng_next(ex) % (step / 2 + 1);
}

/* Log a failure kind at error level the first time, then at debug level (any worker). */
static bool first_of_kind(struct sink_otlp *sk, int kind)
{
	bool first = true;

	pthread_mutex_lock(&sk->lock);
	for (unsigned i = 0; i < sk->nseen && first; i++)
		first = sk->seen[i] != kind;
	if (first && sk->nseen < SEEN_MAX)
		sk->seen[sk->nseen++] = kind;
	pthread_mutex_unlock(&sk->lock);
	return first;
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
	unsigned failed = __atomic_exchange_n(&sk->failing, 0, __ATOMIC_RELAXED);

	if (failed)
		log_info("otlp: export to %s works again after %u failed attempts", sk->url,
			 failed);
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
	/* one warning per outage, not one per worker: the first failure since a success */
	if (!__atomic_fetch_add(&sk->failing, 1, __ATOMIC_RELAXED))
		log_fields(LOG_WARN, &LOG_STR("otlp_endpoint", sk->url), 1,
			   "otlp: export to %s failed (%s); retrying with backoff, spans stay "
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
			       uint64_t evicted_at_start)
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
		if (sk->evicted != evicted_at_start && now - first_ns >= sk->export_timeout_ns) {
			v = V_GIVE_UP_PRESSURE;
			break;
		}
		if (now >= until)
			break;
		wait_until(&sk->retry, &sk->lock, until);
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

static const struct otlp_buf *encode_batch(struct exporter *ex, size_t n)
{
	struct sink_otlp *sk = ex->sk;
	int err = otlp_encoder__encode(ex->enc, ex->batch, n, &ex->raw);

	if (!err && sk->gzip)
		err = otlp_gzip__compress(ex->gz, otlp_buf_payload(&ex->raw), ex->raw.len,
					  &ex->packed);
	if (err) {
		if (first_of_kind(sk, 4000))
			log_error("otlp: cannot encode a batch of %zu spans: %s; batch dropped", n,
				  strerror(-err));
		return NULL;
	}
	return sk->gzip ? &ex->packed : &ex->raw;
}

static void free_batch(struct exporter *ex, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		span_free(ex->batch[i]);
		ex->batch[i] = NULL;
	}
}

static void export_batch(struct exporter *ex, size_t n, uint64_t evicted_at_start)
{
	struct sink_otlp *sk = ex->sk;
	const struct otlp_buf *body = encode_batch(ex, n);
	uint64_t first_ns = mono_ns();

	/* The encoded request (~400 bytes a span) is all that retries need: the spans (~3 KB
	 * each) go now, not after the round trip, so a batch in flight per worker costs a
	 * seventh of the memory. */
	free_batch(ex, n);
	struct otlp_result res;
	unsigned attempt = 0;

	while (body) {
		uint64_t delay;
		enum verdict v;

		otlp_transport__send(ex->tr, (struct otlp_buf *)body, current_deadline(sk), &res);
		CNT_ADD(sk, requests, 1);
		CNT_ADD(sk, bytes_sent, res.bytes_sent);
		/* the attempt finished, whatever it gave: the exporter is not stuck */
		__atomic_store_n(&sk->last_progress_ns, mono_ns(), __ATOMIC_RELAXED);
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
						: backoff_ms(ex, attempt);
		if (delay > RETRY_AFTER_MAX_MS)
			delay = RETRY_AFTER_MAX_MS;
		/* a pause before the retry (backoff, or the endpoint's Retry-After) is progress
		 * too: no attempt is due before it ends (health.h) */
		__atomic_store_n(&sk->last_progress_ns, mono_ns() + delay * 1000000ull,
				 __ATOMIC_RELAXED);
		attempt++;
		if (!res.aborted)
			report_transient(sk, &res, delay);
		v = retry_wait(sk, delay, first_ns, evicted_at_start);
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

/*
 * Sleep until this worker should take a batch (see the top of the file); false when told to
 * stop. Called with the lock held.
 */
static bool wait_for_batch(struct sink_otlp *sk)
{
	for (;;) {
		uint64_t due;

		if (sk->stop)
			return false;
		if (sk->count >= sk->max_batch || (sk->count && sk->flush_deadline))
			return true;
		if (sk->count && !sk->partials) {
			due = sk->queued_ns[sk->head] + sk->delay_ns;
			if (mono_ns() >= due)
				return true;
			if (!sk->timer_armed) {
				/* due only moves later (head: oldest span), never oversleeps */
				sk->timer_armed = true;
				wait_until(&sk->work, &sk->lock, due);
				sk->timer_armed = false;
				continue;
			}
		}
		pthread_cond_wait(&sk->work, &sk->lock);
	}
}

/*
 * After taking a batch: if what is left needs a worker (a full batch, or a partial one with
 * no timer), wake one. Each woken worker does the same, so a backlog fans out one by one.
 */
static void hand_on(struct sink_otlp *sk)
{
	if (sk->count >= sk->max_batch || (sk->count && !sk->timer_armed && !sk->partials))
		pthread_cond_signal(&sk->work);
}

static void *exporter_main(void *arg)
{
	struct exporter *ex = arg;
	struct sink_otlp *sk = ex->sk;

	/* exporting needs no capability; libcurl's resolver threads inherit this */
	privilege__restrict(0);
	pthread_mutex_lock(&sk->lock);
	while (wait_for_batch(sk)) {
		size_t n = sk->count < sk->max_batch ? sk->count : sk->max_batch;
		bool partial = n < sk->max_batch;
		uint64_t evicted = sk->evicted;
		bool expired = sk->expired;

		for (size_t i = 0; i < n; i++) {
			ex->batch[i] = sk->ring[sk->head];
			sk->head = (sk->head + 1) % sk->cap;
		}
		sk->count -= n;
		sk->inflight++;
		sk->inflight_spans += n;
		sk->partials += partial;
		hand_on(sk);
		pthread_mutex_unlock(&sk->lock);

		if (expired) {
			CNT_ADD(sk, dropped_shutdown, n);
			free_batch(ex, n);
		} else {
			export_batch(ex, n, evicted);
		}

		pthread_mutex_lock(&sk->lock);
		sk->inflight--;
		sk->inflight_spans -= n;
		sk->partials -= partial;
		if (drained(sk))
			pthread_cond_broadcast(&sk->drained);
	}
	pthread_cond_broadcast(&sk->drained);
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

void sink_otlp_get_health(struct sink *base, struct sink_otlp_health *h)
{
	struct sink_otlp *sk = to_otlp(base);
	uint64_t answer = __atomic_load_n(&sk->last_progress_ns, __ATOMIC_RELAXED);

	uint64_t due;

	pthread_mutex_lock(&sk->lock);
	h->pending = sk->count + sk->inflight_spans;
	/* spans are due for export only after the schedule delay: no answer is expected before */
	due = sk->busy_since_ns + sk->delay_ns;
	h->waiting_since_ns = !h->pending ? 0 : answer > due ? answer : due;
	pthread_mutex_unlock(&sk->lock);
}

static void otlp_print_stats(struct sink *base, FILE *out)
{
	struct sink_otlp *sk = to_otlp(base);
	struct sink_otlp_stats st;

	sink_otlp_get_stats(base, &st);
	fprintf(out, "  otlp: %s %s%s, %u exporter%s\n", sk->protocol, sk->url,
		sk->gzip ? " (gzip)" : "", sk->nworkers, sk->nworkers == 1 ? "" : "s");
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

static void exporter_free(struct exporter *ex)
{
	otlp_transport_free(ex->tr);
	otlp_encoder_free(ex->enc);
	otlp_gzip_free(ex->gz);
	otlp_buf_free(&ex->raw);
	otlp_buf_free(&ex->packed);
	free(ex->batch);
}

static void otlp_destroy(struct sink *base)
{
	struct sink_otlp *sk = to_otlp(base);
	size_t left;

	if (sk->sync_ready) {
		pthread_mutex_lock(&sk->lock);
		sk->stop = true;
		pthread_cond_broadcast(&sk->work);
		pthread_cond_broadcast(&sk->retry);
		pthread_mutex_unlock(&sk->lock);
		abort_all(sk, true);
	}
	for (unsigned i = 0; i < sk->nworkers; i++)
		if (sk->workers[i].started)
			pthread_join(sk->workers[i].thread, NULL);
	left = sk->count;
	if (left) {
		CNT_ADD(sk, dropped_shutdown, left);
		log_debug("otlp: %zu queued spans discarded at exit", left);
	}
	free_queued(sk);
	for (unsigned i = 0; i < sk->nworkers; i++)
		exporter_free(&sk->workers[i]);
	if (sk->sync_ready) {
		pthread_cond_destroy(&sk->work);
		pthread_cond_destroy(&sk->retry);
		pthread_cond_destroy(&sk->drained);
		pthread_mutex_destroy(&sk->lock);
	}
	free(sk->workers);
	free(sk->queued_ns);
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
	err = err ?: pthread_cond_init(&sk->work, &ca);
	err = err ?: pthread_cond_init(&sk->retry, &ca);
	err = err ?: pthread_cond_init(&sk->drained, &ca);
	err = err ?: pthread_mutex_init(&sk->lock, NULL);
	pthread_condattr_destroy(&ca);
	return -err;
}

/* A worker's own encoder, gzip stream, transport and batch. */
static int exporter_init(struct exporter *ex, struct sink_otlp *sk, unsigned id,
			 const struct otlp_config *cfg, char *msg, size_t msglen)
{
	ex->sk = sk;
	ex->id = id;
	ex->rng = mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)ex;
	if (!ex->rng)
		ex->rng = 1;
	ex->batch = calloc(sk->max_batch, sizeof(*ex->batch));
	ex->enc = otlp_encoder_new(cfg->resource, cfg->nresource);
	ex->gz = cfg->gzip ? otlp_gzip_new(GZIP_LEVEL) : NULL;
	if (!ex->batch || !ex->enc || (cfg->gzip && !ex->gz)) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	/* its own curl handles: its own connection, and the h2c reuse workaround per handle */
	ex->tr = otlp_transport_new(cfg, msg, msglen);
	return ex->tr ? 0 : -EINVAL;
}

/*
 * The agent reads SIGINT/SIGTERM from a signalfd (stopsig.c), which works only if no thread
 * can take them: a process-directed signal goes to any thread that does not block it, and
 * its default action ends the whole agent, unflushed. The main thread blocks them in itself
 * only, and later than this one starts, so the export workers (and the resolver threads
 * libcurl starts from them, which inherit their mask) are created with every signal blocked.
 */
static int exporter_start(struct exporter *ex)
{
	sigset_t all, old;
	char name[16];
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&ex->thread, NULL, exporter_main, ex);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	ex->started = true;
	/* top -H and gdb tell the workers apart */
	snprintf(name, sizeof(name), "otlp-export-%u", ex->id);
	pthread_setname_np(ex->thread, name);
	return 0;
}

struct sink *sink_otlp_new(const struct otlp_config *cfg)
{
	struct sink_otlp *sk = calloc(1, sizeof(*sk));
	unsigned nworkers = cfg->exporters > 0 ? (unsigned)cfg->exporters : 1;
	size_t by_bytes;
	char msg[512] = "", shown_url[1024];
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
	text_url_for_log(shown_url, sizeof(shown_url), cfg->url ? cfg->url : "");
	sk->url = strdup(shown_url);
	sk->ring = calloc(sk->cap, sizeof(*sk->ring));
	sk->queued_ns = calloc(sk->cap, sizeof(*sk->queued_ns));
	sk->workers = calloc(nworkers, sizeof(*sk->workers));
	if (sk->workers)
		sk->nworkers = nworkers;
	if (!sk->url || !sk->ring || !sk->queued_ns || !sk->workers) {
		snprintf(msg, sizeof(msg), "out of memory");
		goto err_free;
	}
	if (init_sync(sk)) {
		snprintf(msg, sizeof(msg), "cannot initialise locks");
		goto err_free;
	}
	sk->sync_ready = true;
	for (unsigned i = 0; i < sk->nworkers; i++)
		if (exporter_init(&sk->workers[i], sk, i, cfg, msg, sizeof(msg)))
			goto err_free;
	for (unsigned i = 0; i < sk->nworkers; i++) {
		err = exporter_start(&sk->workers[i]);
		if (err) {
			snprintf(msg, sizeof(msg), "cannot start export worker %u of %u: %s", i + 1,
				 sk->nworkers, strerror(-err));
			goto err_free;
		}
	}
	log_debug("otlp: exporting to %s over %s%s, queue %zu spans, batch %zu, delay %d ms, "
		  "%u exporters",
		  sk->url, sk->protocol, sk->gzip ? " with gzip" : "", sk->cap, sk->max_batch,
		  cfg->schedule_delay_ms, sk->nworkers);
	return &sk->base;

err_free:
	log_error("otlp: %s", msg);
	otlp_destroy(&sk->base);
	return NULL;
}
