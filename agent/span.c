// SPDX-License-Identifier: BSD-2-Clause
#include "span.h"
#include "resource.h"
#include "stats.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct span *span_new(void)
{
	struct span *s = malloc(sizeof(*s));

	if (!s)
		return NULL;
	/* Only the fixed fields are zeroed. A span is ~3 KB, nearly all of it buffers whose
	 * used part is known (strings up to their NUL, nattrs, nlinks, strbuf_used): clearing
	 * them all was the agent's largest memset. */
	memset(s, 0, offsetof(struct span, name));
	s->name[0] = '\0';
	s->status_message[0] = '\0';
	s->tracestate[0] = '\0';
	s->nattrs = 0;
	s->strbuf_used = 0;
	return s;
}

void span_free(struct span *s)
{
	if (!s)
		return;
	resource_put(s->resource);
	free(s->events);
	free(s);
}

/* An attribute lost: the exporters say how many (OTLP dropped_attributes_count). */
static void span_count_dropped(struct span *s)
{
	s->dropped_attrs++;
	STAT_INC(span_attrs_dropped);
}

static struct span_attr *span_add_attr(struct span *s, const char *key, uint8_t type)
{
	struct span_attr *a;

	if (s->nattrs >= SPAN_MAX_ATTRS) {
		span_count_dropped(s);
		return NULL;
	}
	a = &s->attrs[s->nattrs++];
	memset(a, 0, sizeof(*a));
	a->key = key;
	a->type = type;
	return a;
}

int span_set_str(struct span *s, const char *key, const char *val, size_t len)
{
	size_t room = SPAN_STRBUF - s->strbuf_used;
	struct span_attr *a;

	/* a non-empty value needs a byte besides its NUL: an empty one would hide the loss */
	if (room < (len ? 2U : 1U)) {
		span_count_dropped(s);
		return -ENOSPC;
	}
	a = span_add_attr(s, key, SPAN_ATTR_STR);
	if (!a)
		return -ENOSPC;
	/* keep one byte for the NUL so values can be used as C strings */
	if (len > room - 1)
		len = room - 1;
	memcpy(s->strbuf + s->strbuf_used, val, len);
	s->strbuf[s->strbuf_used + len] = '\0';
	a->off = s->strbuf_used;
	a->len = (uint16_t)len;
	s->strbuf_used += (uint16_t)(len + 1);
	return 0;
}

int span_set_int(struct span *s, const char *key, int64_t val)
{
	struct span_attr *a = span_add_attr(s, key, SPAN_ATTR_INT);

	if (!a)
		return -ENOSPC;
	a->ival = val;
	return 0;
}

int span_set_bool(struct span *s, const char *key, bool val)
{
	struct span_attr *a = span_add_attr(s, key, SPAN_ATTR_BOOL);

	if (!a)
		return -ENOSPC;
	a->ival = val ? 1 : 0;
	return 0;
}

const struct span_attr *span_find_attr(const struct span *s, const char *key)
{
	for (unsigned i = 0; i < s->nattrs; i++)
		if (strcmp(s->attrs[i].key, key) == 0)
			return &s->attrs[i];
	return NULL;
}

int span_add_link(struct span *s, const uint8_t trace_id[16], const uint8_t span_id[8],
		  const char *reason)
{
	struct span_link *l;

	if (s->nlinks >= SPAN_MAX_LINKS)
		return -ENOSPC;
	l = &s->links[s->nlinks++];
	memcpy(l->trace_id, trace_id, 16);
	memcpy(l->span_id, span_id, 8);
	l->reason = reason;
	return 0;
}

/* Ids come from getrandom() in blocks: one syscall per ~170 spans instead of one per id. */
static __thread uint8_t rnd_pool[4096];
static __thread size_t rnd_left;

static void rnd_fill(uint8_t *buf, size_t n)
{
	while (n) {
		size_t take;

		if (rnd_left == 0) {
			size_t got = 0;

			while (got < sizeof(rnd_pool)) {
				ssize_t r = getrandom(rnd_pool + got, sizeof(rnd_pool) - got, 0);

				if (r > 0)
					got += (size_t)r;
				else if (errno != EINTR)
					abort(); /* no entropy source: ids would not be unique */
			}
			rnd_left = sizeof(rnd_pool);
		}
		take = n < rnd_left ? n : rnd_left;
		memcpy(buf, rnd_pool + sizeof(rnd_pool) - rnd_left, take);
		/* forget used bytes so a later fork or dump cannot replay them */
		memset(rnd_pool + sizeof(rnd_pool) - rnd_left, 0, take);
		rnd_left -= take;
		buf += take;
		n -= take;
	}
}

void span_random_id(uint8_t *buf, size_t n)
{
	bool zero;

	do {
		rnd_fill(buf, n);
		zero = true;
		for (size_t i = 0; i < n; i++)
			if (buf[i]) {
				zero = false;
				break;
			}
	} while (zero); /* W3C forbids all-zero ids */
}

static int span_event_dropped(uint32_t *dropped, int err)
{
	(*dropped)++;
	STAT_INC(span_events_dropped);
	return err;
}

int span_events_add(struct span_events **evs, uint32_t *dropped, uint64_t time_unix_ns,
		    uint8_t source, const char *path, const char *text, size_t len, bool truncated)
{
	size_t path_len = source == SPAN_LOG_FILE && path ? strlen(path) : 0;
	struct span_events *e = *evs;
	struct span_event *ev;
	size_t room;

	if (!e) {
		e = malloc(sizeof(*e));
		if (!e)
			return span_event_dropped(dropped, -ENOMEM);
		e->n = 0;
		e->used = 0;
		*evs = e;
	}
	room = SPAN_EVENT_BYTES - e->used;
	/* a line needs at least a byte of its own besides the path: else it is lost, counted */
	if (e->n >= SPAN_MAX_EVENTS || room < path_len + (len ? 1 : 0))
		return span_event_dropped(dropped, -ENOSPC);
	ev = &e->ev[e->n++];
	ev->time_unix_ns = time_unix_ns;
	ev->source = source;
	ev->path_off = e->used;
	ev->path_len = (uint16_t)path_len;
	if (path_len)
		memcpy(e->text + e->used, path, path_len);
	e->used += (uint16_t)path_len;
	room -= path_len;
	if (len > room) {
		len = room;
		truncated = true;
	}
	ev->off = e->used;
	ev->len = (uint16_t)len;
	memcpy(e->text + e->used, text, len);
	e->used += (uint16_t)len;
	ev->truncated = truncated;
	return 0;
}
