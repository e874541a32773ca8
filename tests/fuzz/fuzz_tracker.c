// SPDX-License-Identifier: BSD-2-Clause
/*
 * libFuzzer harness for the tracker: sequences of ring-buffer records (include/hoptrace/
 * events.h), of valid kinds with fuzzed fields and payloads, as a hostile process and a
 * confused kernel side could make them.
 *
 *   make build/fuzz/fuzz_tracker && build/fuzz/fuzz_tracker -max_total_time=60
 *
 * Input: one settings byte (memory budget, timeouts), then operations until the input ends.
 * Each operation starts with an opcode byte:
 *   DATA:  selector bytes (connection, process, thread, direction, flags, position jump,
 *	    lengths, replay, ports) then up to 255 payload bytes; positions follow the stream
 *	    of each (connection, direction) unless the jump byte moves them
 *   CLOSE: a connection
 *   TASK:  fork / exec / exit of a thread or process
 *   TICK:  time passes (timeouts, idle connections)
 *   RAW:   a record of a valid kind cut short or with a fuzzed length
 * Checks, besides the sanitizers: after shutdown the memory budget is back at zero (every
 * charge released), and the budget's peak never passed its limit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hoptrace/events.h"
#include "sink.h"
#include "span.h"
#include "tracker.h"

#define NCONNS 6
#define NPROCS 4

struct input {
	const uint8_t *p;
	size_t left;
};

static uint8_t take(struct input *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static uint16_t take16(struct input *in)
{
	return (uint16_t)(take(in) | take(in) << 8);
}

static void drop_emit(struct sink *sk, struct span *s)
{
	(void)sk;
	/* what a sink reads: every string attribute within the span's buffer */
	for (unsigned i = 0; i < s->nattrs; i++)
		if (s->attrs[i].type == SPAN_ATTR_STR &&
		    (size_t)s->attrs[i].off + s->attrs[i].len >= SPAN_STRBUF)
			abort();
	span_free(s);
}

struct state {
	struct tracker t;
	uint64_t ts;
	uint64_t pos[NCONNS][2];
};

static const uint32_t tgids[NPROCS] = {100, 200, 300, 400};

static void op_data(struct state *st, struct input *in)
{
	uint8_t buf[sizeof(struct ht_data_event) + 256];
	struct ht_data_event *ev = (struct ht_data_event *)buf;
	uint8_t sel = take(in), jump = take(in), cap = take(in), extra = take(in);
	unsigned conn = sel % NCONNS, dir = (sel >> 3) & 1;
	uint64_t *pos = &st->pos[conn][dir];

	memset(ev, 0, sizeof(*ev));
	ev->kind = HT_EV_DATA;
	ev->tgid = tgids[(sel >> 4) % NPROCS];
	ev->tid = ev->tgid + (sel >> 6);
	ev->ts_ns = st->ts += take(in);
	ev->cookie = conn + 1;
	ev->proc_start_ns = 1;
	ev->dir = (uint8_t)dir;
	ev->flags = take16(in) & 0x7f;
	ev->fd = 3;
	/* one tuple per connection, mirrored for pairs (0,1), (2,3): same-host hops */
	ev->tuple.family = (jump & 0x80) ? 0 : 2;
	ev->tuple.lport = (uint16_t)(conn & 1 ? 40000 + conn / 2 : 8080);
	ev->tuple.rport = (uint16_t)(conn & 1 ? 8080 : 40000 + conn / 2);
	if (cap > in->left)
		cap = (uint8_t)in->left;
	ev->cap_len = cap;
	ev->len = cap + (extra & 0x40 ? extra * 97u : 0);
	ev->replay_len = (uint8_t)(extra & 0x0f) <= cap ? extra & 0x0f : 0;
	ev->tail_len = (uint8_t)(take(in) % (HT_TAIL_BYTES + 1));
	for (int i = 0; i < HT_TAIL_BYTES; i++)
		ev->tail[i] = take(in);
	if (ev->flags & HT_DATA_CTX)
		for (size_t i = 0; i < sizeof(ev->ctx.trace_id); i++)
			ev->ctx.trace_id[i] = take(in);
	memcpy(ev->comm, "fuzz", 5);
	/* the stream position: where the direction is, give or take the jump */
	if (jump & 0x40)
		*pos += (uint64_t)(jump & 0x3f) * 1000;
	else if (jump & 0x20)
		*pos -= *pos < (jump & 0x1fu) ? *pos : (jump & 0x1fu);
	ev->pos = *pos >= ev->replay_len ? *pos - ev->replay_len : 0;
	*pos = ev->pos + ev->len;
	if (cap > in->left)
		cap = (uint8_t)in->left;
	ev->cap_len = cap;
	memcpy(ev + 1, in->p, cap);
	in->p += cap;
	in->left -= cap;
	tracker__handle_record(&st->t, buf, sizeof(*ev) + cap);
}

static void op_close(struct state *st, struct input *in)
{
	struct ht_close_event ev = {.kind = HT_EV_CLOSE};
	unsigned conn = take(in) % NCONNS;

	ev.cookie = conn + 1;
	ev.ts_ns = st->ts += take(in);
	ev.tgid = tgids[conn % NPROCS];
	st->pos[conn][0] = st->pos[conn][1] = 0;
	tracker__handle_record(&st->t, &ev, sizeof(ev));
}

static void op_task(struct state *st, struct input *in)
{
	struct ht_task_event ev = {0};
	uint8_t sel = take(in);

	ev.kind = HT_EV_EXIT + sel % 3; /* EXIT, FORK, EXEC */
	ev.tgid = tgids[(sel >> 2) % NPROCS];
	ev.tid = ev.tgid + ((sel >> 4) & 3);
	ev.child_tgid = (sel & 0x40) ? ev.tgid : tgids[take(in) % NPROCS];
	ev.child_tid = ev.child_tgid + (take(in) & 3);
	ev.group_dead = (sel >> 7) & 1;
	ev.ts_ns = st->ts += take(in);
	tracker__handle_record(&st->t, &ev, sizeof(ev));
}

static void op_raw(struct state *st, struct input *in)
{
	uint8_t buf[sizeof(struct ht_data_event) + 64];
	uint32_t kind = HT_EV_DATA + take(in) % 5;
	size_t len = take(in) % sizeof(buf);

	memset(buf, 0, sizeof(buf));
	for (size_t i = 4; i < len; i++)
		buf[i] = take(in);
	memcpy(buf, &kind, sizeof(kind));
	tracker__handle_record(&st->t, buf, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sink sink = {.name = "fuzz", .emit = drop_emit};
	struct input in = {data, size};
	uint8_t settings = take(&in);
	struct tracker_options opt = {
	    .idle_timeout_ns = (settings & 0x0f) * 1000ULL,
	    .request_timeout_ns = ((settings >> 4) & 0x07) * 5000ULL,
	    .stitch = (settings & 0x80) != 0,
	    .proc_root = "/nonexistent-proc", /* never read the fuzzing host's processes */
	    .memory_limit = (settings & 0x08) ? 24 * 1024 : 0,
	    .limits = {.conns = 4,
		       .tuple_index = 3,
		       .procs = 2,
		       .inflight_procs = 2,
		       .inflight_threads = 3},
	};
	struct state *st = calloc(1, sizeof(*st));

	if (!st || tracker__init(&st->t, &sink, &opt))
		abort();
	st->ts = 1000;
	while (in.left) {
		switch (take(&in) % 8) {
		case 0:
		case 1:
		case 2:
		case 3:
			op_data(st, &in);
			break;
		case 4:
			op_close(st, &in);
			break;
		case 5:
			op_task(st, &in);
			break;
		case 6:
			st->ts += (uint64_t)take(&in) * 100;
			tracker__tick(&st->t, st->ts);
			break;
		case 7:
			op_raw(st, &in);
			break;
		}
		if (opt.memory_limit && st->t.budget.used > opt.memory_limit)
			abort();
	}
	tracker__shutdown(&st->t);
	if (st->t.budget.used != 0)
		abort(); /* a charge never released: the budget would leak away */
	free(st);
	return 0;
}
