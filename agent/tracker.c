// SPDX-License-Identifier: BSD-2-Clause
#include "tracker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exchange.h"
#include "http1.h"
#include "log.h"
#include "resource.h"
#include "sink.h"
#include "span.h"
#include "stats.h"

#define CONN_TABLE_MAX 65536
#define CONN_MAX_PENDING 32
/* Past three quarters of the memory budget, a request unanswered for this long ends (as an
 * error that says why) instead of holding its share until the usual timeout: requests that
 * nobody answers must not keep out the ones that will be. Below that, long polls keep their
 * full timeout. */
#define PRESSURE_REQUEST_TIMEOUT_NS (30ULL * 1000000000ULL)

enum conn_role {
	ROLE_UNKNOWN = 0,
	ROLE_SERVER = 1, /* accepted side: requests come in */
	ROLE_CLIENT = 2, /* connected side: requests go out */
};

struct conn;

/* Parser callback context: which connection, which direction. */
struct conn_dir {
	struct conn *c;
	uint8_t dir;
};

struct conn {
	struct tracker *t;
	uint64_t cookie;
	struct conn_info info;
	uint8_t role;
	bool interim_response; /* the response being completed is a 1xx */
	bool orphan_response;  /* the response being parsed answers no request we saw */
	bool have_pos[2];
	uint64_t next_pos[2];	/* next expected stream position per direction */
	uint64_t last_ts[2];	/* time of the last I/O per direction */
	uint64_t last_activity; /* monotonic ns */
	struct conn_dir dctx[2];
	struct http1_parser parser[2];
	bool has_ctx[2];	  /* ctx[dir] not yet taken by a request head */
	struct ht_ctx_ids ctx[2]; /* BPF-chosen ids of the request that started (inject) */
	unsigned qhead, qlen;	  /* FIFO of requests waiting for their response */
	struct exchange *queue[CONN_MAX_PENDING];
	/* the record being handled, for the parser callbacks it causes (NULL between) */
	const struct record_ctx *rec;
	/* the memory budget refused this connection a request or a buffer: its requests can
	 * no longer be paired with their responses. It is forgotten after the record. */
	bool abandoned;
};

static size_t conn_cost(void)
{
	return mem_budget__cost(sizeof(struct conn));
}

static const struct http1_callbacks parser_callbacks;

/* ---- connection table -------------------------------------------------------------- */

static struct conn *conn_create(struct tracker *t, const struct ht_data_event *ev)
{
	struct conn *c;

	if (!mem_budget__charge(&t->budget, conn_cost()))
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		mem_budget__release(&t->budget, conn_cost());
		return NULL;
	}
	c->t = t;
	c->cookie = ev->cookie;
	c->info.cookie = ev->cookie;
	c->info.tgid = ev->tgid;
	c->info.proc_start_ns = ev->proc_start_ns;
	c->info.fd = ev->fd;
	c->info.tuple = ev->tuple;
	c->info.tls = (ev->flags & HT_DATA_TLS) != 0;
	memcpy(c->info.comm, ev->comm, sizeof(c->info.comm));
	c->info.comm[sizeof(c->info.comm) - 1] = '\0';
	for (int d = 0; d < 2; d++) {
		c->dctx[d].c = c;
		c->dctx[d].dir = (uint8_t)d;
	}
	if (u64map_put(&t->conns, c->cookie, c)) {
		STAT_INC(drop_conn_table_full);
		free(c);
		mem_budget__release(&t->budget, conn_cost());
		return NULL;
	}
	STAT_INC(conns_http);
	return c;
}

static struct exchange *queue_front(struct conn *c)
{
	return c->qlen ? c->queue[c->qhead] : NULL;
}

static struct exchange *queue_pop(struct conn *c)
{
	struct exchange *ex = queue_front(c);

	if (ex) {
		c->qhead = (c->qhead + 1) % CONN_MAX_PENDING;
		c->qlen--;
	}
	return ex;
}

static int queue_push(struct conn *c, struct exchange *ex)
{
	if (c->qlen == CONN_MAX_PENDING)
		return -ENOSPC;
	c->queue[(c->qhead + c->qlen) % CONN_MAX_PENDING] = ex;
	c->qlen++;
	return 0;
}

/* ---- same-host hops: a client connection found from the server end ----------------- */

static uint64_t endpoints_key(const uint8_t *a_addr, uint16_t a_port, const uint8_t *b_addr,
			      uint16_t b_port)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (int i = 0; i < 16; i++)
		h = (h ^ a_addr[i]) * 1099511628211ULL;
	h = (h ^ a_port) * 1099511628211ULL;
	for (int i = 0; i < 16; i++)
		h = (h ^ b_addr[i]) * 1099511628211ULL;
	return (h ^ b_port) * 1099511628211ULL;
}

static uint64_t tuple_key(const struct ht_tuple *t)
{
	return endpoints_key(t->laddr, t->lport, t->raddr, t->rport);
}

/* The connection at the other end of c on this host, with the opposite role. */
static struct conn *find_local_peer(struct tracker *t, const struct conn *c)
{
	const struct ht_tuple *tp = &c->info.tuple;
	struct conn *pc;

	if (!tp->family) /* TLS session without a known socket: endpoints unknown */
		return NULL;
	pc = u64map_get(&t->conns_by_tuple,
			endpoints_key(tp->raddr, tp->rport, tp->laddr, tp->lport));
	if (!pc || pc->role == c->role || pc->info.tuple.lport != tp->rport ||
	    pc->info.tuple.rport != tp->lport || memcmp(pc->info.tuple.laddr, tp->raddr, 16) ||
	    memcmp(pc->info.tuple.raddr, tp->laddr, 16))
		return NULL;
	return pc;
}

/* The oldest request on a connection whose other end has not been seen yet: both ends see
 * the same requests in the same order. */
static struct exchange *first_unseen_request(struct conn *c)
{
	for (unsigned i = 0; i < c->qlen; i++) {
		struct exchange *ex = c->queue[(c->qhead + i) % CONN_MAX_PENDING];

		if (!ex->peer_seen)
			return ex;
	}
	return NULL;
}

/* A request just queued on c: if the other end of the connection is on this host and has
 * this request too, introduce the two exchanges. Either end can be processed first: on
 * loopback the receiver's read often completes before the sender's write returns. */
static void link_same_host(struct tracker *t, struct conn *c, struct exchange *ex)
{
	struct conn *pc = find_local_peer(t, c);
	struct exchange *other = pc ? first_unseen_request(pc) : NULL;

	if (!other)
		return;
	if (c->role == ROLE_SERVER)
		exchange_link_peers(&t->env, ex, other);
	else
		exchange_link_peers(&t->env, other, ex);
}

/* End every request still waiting on c with an error saying why. */
static void conn_fail_pending(struct conn *c, uint64_t end_ns, const char *why)
{
	struct exchange *ex;

	while ((ex = queue_pop(c))) {
		STAT_INC(spans_error_incomplete);
		exchange_finish(&c->t->env, ex, end_ns, why);
	}
}

static void conn_free(struct tracker *t, struct conn *c)
{
	u64map_del(&t->conns, c->cookie);
	if (c->role != ROLE_UNKNOWN &&
	    u64map_get(&t->conns_by_tuple, tuple_key(&c->info.tuple)) == c)
		u64map_del(&t->conns_by_tuple, tuple_key(&c->info.tuple));
	for (int d = 0; d < 2; d++)
		http1_parser_free(&c->parser[d]);
	free(c);
	mem_budget__release(&t->budget, conn_cost());
}

/* The budget refused c something: its requests end now, with the reason, and everything it
 * holds is freed. Its next start line makes a new connection, as for one that began before
 * the agent. */
static void conn_abandon(struct tracker *t, struct conn *c, uint64_t now_ns)
{
	conn_fail_pending(c, now_ns, "memory limit reached: request not followed");
	conn_free(t, c);
}

/* ---- roles and streams ------------------------------------------------------------- */

/* The first start line seen decides the role: a request received means we are the server
 * side of this socket, a request sent means the client side (and likewise for responses).
 * Only a whole one: "H" may begin a response or a HEAD request; the record that completes a
 * start line split over several I/Os replays its beginning. */
static bool conn_assign_role(struct conn *c, const struct ht_data_event *ev, const uint8_t *payload)
{
	enum http1_kind kind;
	uint8_t req_dir;

	if (!ev->cap_len || !http1_is_start(payload, ev->cap_len, &kind))
		return false;
	if ((ev->dir == HT_DIR_INGRESS) == (kind == HTTP1_REQUEST))
		c->role = ROLE_SERVER;
	else
		c->role = ROLE_CLIENT;
	/* without the entry a same-host hop is just not recognised: counted */
	if (c->info.tuple.family && u64map_put(&c->t->conns_by_tuple, tuple_key(&c->info.tuple), c))
		STAT_INC(drop_conns_by_tuple_full);
	req_dir = c->role == ROLE_SERVER ? HT_DIR_INGRESS : HT_DIR_EGRESS;
	http1_parser_init(&c->parser[req_dir], HTTP1_REQUEST, &parser_callbacks, &c->dctx[req_dir]);
	http1_parser_init(&c->parser[!req_dir], HTTP1_RESPONSE, &parser_callbacks,
			  &c->dctx[!req_dir]);
	return true;
}

static void feed_captured(struct http1_parser *p, const struct ht_data_event *ev,
			  const uint8_t *payload)
{
	uint64_t rest = ev->len > ev->cap_len ? ev->len - ev->cap_len : 0;

	if (ev->cap_len)
		http1_parser_feed(p, payload, ev->cap_len, true, ev->ts_ns);
	if (!rest)
		return;
	/* the middle of the I/O was not copied; its last bytes may have been */
	if ((ev->flags & HT_DATA_TAIL) && ev->tail_len && ev->tail_len <= rest) {
		http1_parser_gap(p, rest - ev->tail_len, ev->ts_ns);
		http1_parser_feed(p, ev->tail, ev->tail_len, false, ev->ts_ns);
	} else {
		http1_parser_gap(p, rest, ev->ts_ns);
	}
}

/* The part of ev the parser has not had, given the next position expected. A record may
 * replay bytes of earlier I/Os (ev->replay_len: the first bytes of a start line, too few to
 * tell one on their own), which came with the records of those I/Os. They are fed again
 * only to a parser that lost track: it dropped them, and finds its way back only at a start
 * line that begins an I/O. False when ev holds nothing new (a position that went back). */
static bool unseen_part(const struct ht_data_event *ev, const uint8_t *payload, uint64_t next_pos,
			bool resyncing, struct ht_data_event *part, const uint8_t **part_payload)
{
	uint64_t seen = next_pos > ev->pos ? next_pos - ev->pos : 0;

	*part = *ev;
	*part_payload = payload;
	if (!seen || (resyncing && seen <= ev->replay_len))
		return true;
	if (seen > ev->replay_len || seen > ev->cap_len || seen >= ev->len)
		return false;
	part->pos += seen;
	part->len -= (uint32_t)seen;
	part->cap_len -= (uint32_t)seen;
	part->replay_len = 0;
	*part_payload = payload + seen;
	return true;
}

static void conn_feed(struct conn *c, const struct ht_data_event *rec, const uint8_t *rec_payload)
{
	uint8_t d = rec->dir & 1;
	struct http1_parser *p = &c->parser[d];
	struct ht_data_event part;
	const struct ht_data_event *ev = &part;
	const uint8_t *payload;

	if (!c->have_pos[d]) {
		c->have_pos[d] = true;
		c->next_pos[d] = rec->pos;
	}
	if (!unseen_part(rec, rec_payload, c->next_pos[d], http1_parser_resyncing(p), &part,
			 &payload)) {
		STAT_INC(drop_out_of_order);
		return;
	}
	if (ev->pos > c->next_pos[d])
		http1_parser_gap(p, ev->pos - c->next_pos[d], ev->ts_ns);
	if (ev->flags & HT_DATA_READ_FAULT)
		http1_parser_gap(p, ev->len, ev->ts_ns);
	else
		feed_captured(p, ev, payload);
	c->next_pos[d] = ev->pos + ev->len;
	c->last_ts[d] = ev->ts_ns;
}

/* ---- parser callbacks -------------------------------------------------------------- */

static enum http1_body_rule on_request_head(struct conn *c, const struct http1_head *h)
{
	struct tracker *t = c->t;
	uint8_t d = c->role == ROLE_SERVER ? HT_DIR_INGRESS : HT_DIR_EGRESS;
	struct record_ctx rec = *c->rec;
	struct exchange *ex;

	if (c->abandoned)
		return HTTP1_BODY_AUTO;
	/* the ids BPF chose arrived with the record where this request began, maybe earlier */
	rec.ids = c->has_ctx[d] ? &c->ctx[d] : NULL;
	c->has_ctx[d] = false;
	if (c->role == ROLE_SERVER) {
		ex = exchange_start_server(&t->env, &c->info, h, &rec);
		logcap__server_seen(&t->logs, c->info.tgid);
	} else
		ex = exchange_start_client(&t->env, &c->info, h, &rec);
	if (!ex) {
		/* out of budget (or memory): the responses to come would answer the wrong
		 * requests, so the connection is given up */
		c->abandoned = true;
		return HTTP1_BODY_AUTO;
	}
	if (queue_push(c, ex)) {
		STAT_INC(drop_pending_overflow);
		exchange_discard(&t->env, ex);
		return HTTP1_BODY_AUTO;
	}
	link_same_host(t, c, ex);
	return HTTP1_BODY_AUTO;
}

static enum http1_body_rule on_response_head(struct conn *c, const struct http1_head *h)
{
	struct exchange *ex = queue_front(c);

	if (c->abandoned)
		return HTTP1_BODY_AUTO;
	if (!ex) {
		/* the agent started between request and response, or the request was lost */
		STAT_INC(drop_response_unmatched);
		c->orphan_response = true;
		return HTTP1_BODY_AUTO;
	}
	if (h->status == 101) {
		/* protocol switch (websocket...): the exchange ends here, the rest is opaque */
		exchange_answered(&c->t->env, ex, h->status, c->rec);
		exchange_finish(&c->t->env, queue_pop(c), c->rec->ts_ns, NULL);
		return HTTP1_BODY_TUNNEL;
	}
	if (h->status < 200) {
		c->interim_response = true; /* 100 Continue and friends: the real answer follows */
		return HTTP1_BODY_NONE;
	}
	exchange_answered(&c->t->env, ex, h->status, c->rec);
	if (ex->is_connect && h->status < 300) {
		exchange_finish(&c->t->env, queue_pop(c), c->rec->ts_ns, NULL);
		return HTTP1_BODY_TUNNEL;
	}
	return ex->is_head ? HTTP1_BODY_NONE : HTTP1_BODY_AUTO;
}

/* A client call answered while the server end of its connection, on this host and known,
 * never saw the request: the server's records came late (records_late) or were lost, so
 * that hop's SERVER span goes out without its caller. */
static void count_missed_peer(struct conn *c, const struct exchange *ex)
{
	if (c->role == ROLE_CLIENT && !ex->peer_seen && find_local_peer(c->t, c))
		STAT_INC(peer_link_missed);
}

static enum http1_body_rule on_head(void *ctx, const struct http1_head *h)
{
	struct conn_dir *cd = ctx;

	if (h->kind == HTTP1_REQUEST)
		return on_request_head(cd->c, h);
	return on_response_head(cd->c, h);
}

static void on_complete(void *ctx, enum http1_kind kind, uint64_t end_tag)
{
	struct conn *c = ((struct conn_dir *)ctx)->c;
	struct exchange *ex;

	if (kind == HTTP1_REQUEST || c->abandoned)
		return;
	if (c->interim_response) {
		c->interim_response = false;
		return;
	}
	if (c->orphan_response) {
		c->orphan_response = false;
		return;
	}
	ex = queue_pop(c);
	if (!ex)
		return;
	count_missed_peer(c, ex);
	exchange_finish(&c->t->env, ex, end_tag, NULL);
}

static void count_parse_error(enum http1_error err)
{
	switch (err) {
	case HTTP1_ERR_GAP_IN_HEADERS:
		STAT_INC(drop_gap_in_headers);
		break;
	case HTTP1_ERR_HEADER_TOO_LARGE:
		STAT_INC(drop_header_too_large);
		break;
	case HTTP1_ERR_NOT_HTTP:
		break; /* joined mid-stream: expected once per pre-existing connection */
	case HTTP1_ERR_NO_MEMORY:
		break; /* the budget counted it (budget_drops) */
	default:
		STAT_INC(drop_parse_error);
	}
}

static void on_error(void *ctx, enum http1_error err)
{
	struct conn_dir *cd = ctx;
	struct conn *c = cd->c;
	struct exchange *ex = queue_front(c);

	count_parse_error(err);
	c->interim_response = false;
	c->orphan_response = false;
	if (err == HTTP1_ERR_NO_MEMORY)
		c->abandoned = true; /* a head lost: pairing is lost too */
	if (c->abandoned || c->parser[cd->dir].kind != HTTP1_RESPONSE || !ex)
		return;
	/* the answer to the oldest request was lost or broken: end that request now rather
	 * than pair its successors with the wrong responses */
	if (ex->status)
		exchange_finish(&c->t->env, queue_pop(c), c->last_ts[cd->dir], NULL);
	else if (err != HTTP1_ERR_NOT_HTTP)
		exchange_finish(&c->t->env, queue_pop(c), c->last_ts[cd->dir],
				"response could not be parsed");
}

/* Header bytes held between reads are charged to the budget. */
static int on_buffer(void *ctx, size_t old_cap, size_t new_cap)
{
	struct mem_budget *b = &((struct conn_dir *)ctx)->c->t->budget;

	if (new_cap > old_cap)
		return mem_budget__charge(b, new_cap - old_cap) ? 0 : -ENOMEM;
	mem_budget__release(b, old_cap - new_cap);
	return 0;
}

static const struct http1_callbacks parser_callbacks = {
    .on_head = on_head,
    .on_complete = on_complete,
    .on_error = on_error,
    .on_buffer = on_buffer,
};

/* ---- records ----------------------------------------------------------------------- */

/* A data record of a connection whose role is known, with c->rec set. */
static void conn_handle_data(struct conn *c, const struct ht_data_event *ev, const uint8_t *payload)
{
	if (ev->flags & HT_DATA_CTX) {
		c->ctx[ev->dir & 1] = ev->ctx;
		c->has_ctx[ev->dir & 1] = true;
	}
	if (ev->flags & HT_DATA_EOF) {
		/* the peer closed its side: a response delimited by close is complete */
		http1_parser_eof(&c->parser[HT_DIR_INGRESS], ev->ts_ns);
		return;
	}
	conn_feed(c, ev, payload);
}

static void handle_data(struct tracker *t, const struct ht_data_event *ev, const uint8_t *payload)
{
	struct conn *c = u64map_get(&t->conns, ev->cookie);
	struct record_ctx rec = {0};

	STAT_INC(events_data);
	STAT_ADD(bytes_captured, ev->cap_len);
	if (!c) {
		/* a connection is created only at a start line: EOF or body bytes of a
		 * connection we never saw begin carry nothing to trace */
		if ((ev->flags & HT_DATA_EOF) || !ev->cap_len)
			return;
		c = conn_create(t, ev);
		if (!c)
			return;
	}
	c->last_activity = ev->ts_ns;
	c->info.tgid = ev->tgid;
	if (c->role == ROLE_UNKNOWN && !conn_assign_role(c, ev, payload))
		return;
	rec.tid = ev->tid;
	rec.ts_ns = ev->ts_ns;
	rec.flags = ev->flags;
	c->rec = &rec;
	conn_handle_data(c, ev, payload);
	c->rec = NULL;
	if (c->abandoned)
		conn_abandon(t, c, ev->ts_ns);
}

static void handle_close(struct tracker *t, const struct ht_close_event *ev)
{
	struct conn *c = u64map_get(&t->conns, ev->cookie);
	const char *why;

	STAT_INC(events_close);
	if (!c)
		return;
	if (c->role != ROLE_UNKNOWN) {
		/* what the end of the stream completes happened at the close, on no thread */
		struct record_ctx rec = {.ts_ns = ev->ts_ns};

		c->rec = &rec;
		http1_parser_eof(&c->parser[HT_DIR_INGRESS], ev->ts_ns);
		http1_parser_eof(&c->parser[HT_DIR_EGRESS], ev->ts_ns);
		c->rec = NULL;
	}
	why = proc_table__exited(&t->procs, c->info.tgid)
		  ? "process exited before the response completed"
		  : "connection closed before the response completed";
	conn_fail_pending(c, ev->ts_ns, why);
	conn_free(t, c);
}

static void handle_task(struct tracker *t, const struct ht_task_event *ev)
{
	STAT_INC(events_task);
	switch (ev->kind) {
	case HT_EV_FORK:
		correlate__thread_created(&t->corr, ev->tid, ev->child_tid,
					  ev->child_tgid != ev->tgid, ev->ts_ns);
		break;
	case HT_EV_EXEC:
		proc_table__forget(&t->procs, ev->tgid);
		if (t->on_exec)
			t->on_exec(t->on_exec_ctx, ev->tgid, ev->ts_ns);
		break;
	case HT_EV_EXIT:
		correlate__thread_exited(&t->corr, ev->tid);
		if (ev->group_dead) {
			proc_table__mark_exited(&t->procs, ev->tgid, ev->ts_ns);
			logcap__proc_exited(&t->logs, ev->tgid);
		}
		break;
	}
}

void tracker__handle_record(struct tracker *t, const void *data, size_t len)
{
	uint32_t kind;

	if (len < sizeof(kind))
		return;
	memcpy(&kind, data, sizeof(kind));
	switch (kind) {
	case HT_EV_DATA: {
		const struct ht_data_event *ev = data;

		if (len < sizeof(*ev) || len - sizeof(*ev) < ev->cap_len)
			break;
		handle_data(t, ev, (const uint8_t *)(ev + 1));
		return;
	}
	case HT_EV_CLOSE:
		if (len < sizeof(struct ht_close_event))
			break;
		handle_close(t, data);
		return;
	case HT_EV_FORK:
	case HT_EV_EXEC:
	case HT_EV_EXIT:
		if (len < sizeof(struct ht_task_event))
			break;
		handle_task(t, data);
		return;
	case HT_EV_LOG:
		if (len < sizeof(struct ht_log_event))
			break;
		STAT_INC(events_log);
		logcap__handle(&t->logs, &t->env, data);
		return;
	}
	STAT_INC(events_unknown);
}

/* ---- lifecycle --------------------------------------------------------------------- */

static int64_t monotonic_to_unix_offset(void)
{
	struct timespec mono, real;

	clock_gettime(CLOCK_REALTIME, &real);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	return ((int64_t)real.tv_sec - mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);
}

/* The route table, keyed at random so that traffic cannot aim at its hash slots. */
static int init_routes(struct tracker *t, const struct tracker_options *opt)
{
	uint8_t key[16];

	span_random_id(key, sizeof(key));
	return route_table__init(&t->routes, opt->max_routes_per_service, opt->routes, key);
}

int tracker__init(struct tracker *t, struct sink *sink, const struct tracker_options *opt)
{
	int err;

	memset(t, 0, sizeof(*t));
	t->opt = *opt;
	t->sink = sink;
	t->mono_to_unix_ns = monotonic_to_unix_offset();
	err = u64map_init(&t->conns, opt->limits.conns ? opt->limits.conns : CONN_TABLE_MAX);
	if (err)
		return err;
	err = u64map_init(&t->conns_by_tuple,
			  opt->limits.tuple_index ? opt->limits.tuple_index : CONN_TABLE_MAX);
	if (err)
		goto err_conns;
	err = proc_table__init_sized(&t->procs, opt->proc_root, opt->limits.procs);
	if (err)
		goto err_conns;
	err = correlate__init_sized(&t->corr, opt->limits.inflight_procs,
				    opt->limits.inflight_threads);
	if (err)
		goto err_procs;
	t->budget.limit = opt->memory_limit;
	err = init_routes(t, opt);
	if (err)
		goto err_corr;
	err = logcap__init(&t->logs, opt->capture_logs, opt->log_files);
	if (err) {
		route_table__free(&t->routes);
		goto err_corr;
	}
	t->env = (struct exchange_env){.corr = &t->corr,
				       .budget = &t->budget,
				       .procs = &t->procs,
				       .sink = sink,
				       .mono_to_unix_ns = t->mono_to_unix_ns,
				       .stitch = opt->stitch,
				       .proc_root = opt->proc_root,
				       .keep_path_params = opt->keep_path_params,
				       .routes = &t->routes,
				       .sampler = opt->sampler};
	return 0;

err_corr:
	correlate__free(&t->corr);
err_procs:
	proc_table__free(&t->procs);
err_conns:
	u64map_free(&t->conns_by_tuple);
	u64map_free(&t->conns);
	return err;
}

static bool conn_idle(const struct tracker *t, const struct conn *c, uint64_t now_ns)
{
	return now_ns > c->last_activity && now_ns - c->last_activity > t->opt.idle_timeout_ns;
}

/* Requests unanswered for too long end with an error; connections idle for long are
 * forgotten (their socket may have gone without a close we could see). */
static bool budget_pressed(const struct mem_budget *b)
{
	return b->limit && b->used > b->limit / 4 * 3;
}

void tracker__tick(struct tracker *t, uint64_t now_ns)
{
	bool pressed = budget_pressed(&t->budget);
	uint64_t timeout = t->opt.request_timeout_ns, k;
	void *v;

	if (pressed && timeout > PRESSURE_REQUEST_TIMEOUT_NS)
		timeout = PRESSURE_REQUEST_TIMEOUT_NS;
	for (size_t it = 0; u64map_next(&t->conns, &it, &k, &v);) {
		struct conn *c = v;
		struct exchange *ex = queue_front(c);

		while (ex && now_ns > ex->start_ns && now_ns - ex->start_ns > timeout) {
			bool early = now_ns - ex->start_ns <= t->opt.request_timeout_ns;

			STAT_INC(spans_error_incomplete);
			if (early)
				STAT_INC(budget_expired);
			exchange_finish(&t->env, queue_pop(c), now_ns,
					early ? "no response within 30 s while the memory limit "
						"was near"
					      : "no response within the timeout");
			ex = queue_front(c);
		}
		if (!c->qlen && conn_idle(t, c, now_ns)) {
			STAT_INC(conns_idle_expired);
			conn_free(t, c);
		}
	}
	proc_table__expire(&t->procs, now_ns);
}

void tracker__shutdown(struct tracker *t)
{
	struct timespec now;
	uint64_t now_ns, k;
	void *v;

	clock_gettime(CLOCK_MONOTONIC, &now);
	now_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
	for (size_t it = 0; u64map_next(&t->conns, &it, &k, &v);) {
		struct conn *c = v;

		conn_fail_pending(c, now_ns, "agent stopped before the response completed");
		conn_free(t, c);
	}
	u64map_free(&t->conns);
	u64map_free(&t->conns_by_tuple);
	correlate__free(&t->corr);
	proc_table__free(&t->procs);
	route_table__free(&t->routes);
	logcap__free(&t->logs);
}

void tracker__on_exec(struct tracker *t, void (*fn)(void *ctx, uint32_t tgid, uint64_t ts_ns),
		      void *ctx)
{
	t->on_exec = fn;
	t->on_exec_ctx = ctx;
}

size_t tracker__conn_count(const struct tracker *t)
{
	return t->conns.count;
}

size_t tracker__budget_used(const struct tracker *t)
{
	return t->budget.used;
}
