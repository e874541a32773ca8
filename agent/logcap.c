// SPDX-License-Identifier: BSD-2-Clause
#include "logcap.h"

#include <bpf/bpf.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "exchange.h"
#include "hashmap.h"
#include "span.h"
#include "stats.h"

/* ---- redaction ------------------------------------------------------------------ */

/* Bytes that end a token of a log line (a URL, a value). */
static bool ends_token(char c)
{
	return isspace((unsigned char)c) || c == '"' || c == '\'' || c == '<' || c == '>' ||
	       c == '`';
}

/* Whether in[i..j) is a URL or a path whose query and fragment must go: it holds "://", or
 * starts with '/'. */
static bool token_is_url(const char *in, size_t i, size_t j)
{
	if (in[i] == '/')
		return true;
	for (size_t k = i; k + 2 < j; k++)
		if (in[k] == ':' && in[k + 1] == '/' && in[k + 2] == '/')
			return true;
	return false;
}

struct out_buf {
	char *p;
	size_t cap, used;
};

static void put(struct out_buf *o, const char *s, size_t n)
{
	size_t room = o->cap - 1 - o->used;

	if (n > room)
		n = room;
	memcpy(o->p + o->used, s, n);
	o->used += n;
}

/* A URL token in[i..j) without userinfo, query and fragment. */
static void put_url(struct out_buf *o, const char *in, size_t i, size_t j)
{
	size_t auth = i, aend, end = i;
	const char *sep = NULL;

	for (size_t k = i; k + 2 < j; k++) {
		if (in[k] == ':' && in[k + 1] == '/' && in[k + 2] == '/') {
			sep = in + k;
			break;
		}
	}
	if (sep) {
		auth = (size_t)(sep - in) + 3;
		put(o, in + i, auth - i);
		aend = auth;
		while (aend < j && in[aend] != '/' && in[aend] != '?' && in[aend] != '#')
			aend++;
		/* userinfo: up to the last '@' of the authority */
		for (size_t k = auth; k < aend; k++)
			if (in[k] == '@')
				auth = k + 1;
	}
	end = auth;
	while (end < j && in[end] != '?' && in[end] != '#')
		end++;
	put(o, in + auth, end - auth);
}

/* Pass 1: URLs lose userinfo, query and fragment. */
static void redact_urls(const char *in, size_t len, struct out_buf *o)
{
	size_t i = 0;

	while (i < len) {
		size_t j = i;

		if (ends_token(in[i])) {
			put(o, in + i, 1);
			i++;
			continue;
		}
		while (j < len && !ends_token(in[j]))
			j++;
		if (token_is_url(in, i, j))
			put_url(o, in, i, j);
		else
			put(o, in + i, j - i);
		i = j;
	}
}

enum mask_kind {
	MASK_VALUE,	 /* key=value: the value */
	MASK_TO_END,	 /* a header whose whole value is secret: to the end of the line */
	MASK_NEXT_TOKEN, /* "Bearer xyz": the next token */
};

static const struct secret_key {
	const char *name;
	enum mask_kind kind;
} secret_keys[] = {
    {"authorization", MASK_TO_END}, {"set-cookie", MASK_TO_END}, {"cookie", MASK_TO_END},
    {"bearer", MASK_NEXT_TOKEN},    {"password", MASK_VALUE},	 {"passwd", MASK_VALUE},
    {"secret", MASK_VALUE},	    {"token", MASK_VALUE},	 {"api_key", MASK_VALUE},
    {"apikey", MASK_VALUE},	    {"api-key", MASK_VALUE},
};

static bool match_ci(const char *s, size_t avail, const char *word, size_t n)
{
	if (avail < n)
		return false;
	for (size_t k = 0; k < n; k++)
		if (tolower((unsigned char)s[k]) != word[k])
			return false;
	return true;
}

static bool value_end(char c)
{
	return isspace((unsigned char)c) || c == '&' || c == ',' || c == ';' || c == '"' ||
	       c == '\'' || c == ')' || c == ']' || c == '}' || c == '<' || c == '>';
}

/* Where the value after a key ending at in[k] starts (past quotes, spaces and one '=' or
 * ':'), or 0 when no assignment follows. For "Bearer", a space is the separator. */
static size_t value_start(const char *in, size_t len, size_t k, enum mask_kind kind)
{
	size_t p = k;

	if (kind == MASK_NEXT_TOKEN) {
		if (p >= len || in[p] != ' ')
			return 0;
		while (p < len && in[p] == ' ')
			p++;
		return p < len ? p : 0;
	}
	while (p < len && (in[p] == '"' || in[p] == '\''))
		p++;
	while (p < len && in[p] == ' ')
		p++;
	if (p >= len || (in[p] != '=' && in[p] != ':'))
		return 0;
	p++;
	while (p < len && in[p] == ' ')
		p++;
	return p < len ? p : 0;
}

/* End of the value starting at in[p]: a quoted one to its closing quote. */
static size_t value_stop(const char *in, size_t len, size_t p, enum mask_kind kind, bool *quoted)
{
	size_t q = p;

	*quoted = false;
	if (kind == MASK_TO_END) {
		/* a quoted access-log field ends at its quote; else the line */
		while (q < len && in[q] != '"')
			q++;
		return q;
	}
	if (in[p] == '"' || in[p] == '\'') {
		char quote = in[p];

		*quoted = true;
		q = p + 1;
		while (q < len && in[q] != quote)
			q++;
		return q; /* the closing quote is kept */
	}
	while (q < len && !value_end(in[q]))
		q++;
	return q;
}

/* Pass 2: values of credentials become "***". */
static void redact_secrets(const char *in, size_t len, struct out_buf *o)
{
	size_t i = 0;

	while (i < len) {
		bool done = false;

		for (size_t s = 0; s < sizeof(secret_keys) / sizeof(secret_keys[0]) && !done; s++) {
			const struct secret_key *key = &secret_keys[s];
			size_t n = strlen(key->name), p, q;
			bool quoted;

			if (!match_ci(in + i, len - i, key->name, n))
				continue;
			p = value_start(in, len, i + n, key->kind);
			if (!p)
				continue;
			q = value_stop(in, len, p, key->kind, &quoted);
			put(o, in + i, p - i + (quoted ? 1 : 0));
			put(o, "***", 3);
			i = q;
			done = true;
		}
		if (!done) {
			put(o, in + i, 1);
			i++;
		}
	}
}

size_t log_redact(const char *in, size_t len, char *out, size_t cap)
{
	char mid[LOG_REDACT_CAP(LOGCAP_LINE_MAX)];
	struct out_buf a = {.p = mid, .cap = sizeof(mid)};
	struct out_buf b = {.p = out, .cap = cap};

	if (!cap)
		return 0;
	/* a longer input is the caller's mistake: what does not fit is cut, never copied raw */
	if (len > LOGCAP_LINE_MAX)
		len = LOGCAP_LINE_MAX;
	redact_urls(in, len, &a);
	redact_secrets(mid, a.used, &b);
	out[b.used] = '\0';
	return b.used;
}

/* ---- attaching ------------------------------------------------------------------ */

int logcap__init(struct logcap *lc, bool on, const struct logcap_files *files)
{
	memset(lc, 0, sizeof(*lc));
	lc->procs_fd = -1;
	lc->files = files;
	if (!on)
		return 0;
	lc->procs = malloc(sizeof(*lc->procs));
	if (!lc->procs || u64map_init(lc->procs, HT_MAX_LOG_PROCS)) {
		free(lc->procs);
		lc->procs = NULL;
		return -ENOMEM;
	}
	return 0;
}

void logcap__set_map(struct logcap *lc, int procs_fd)
{
	lc->procs_fd = lc->procs ? procs_fd : -1;
}

void logcap__free(struct logcap *lc)
{
	if (lc->procs) {
		u64map_free(lc->procs);
		free(lc->procs);
	}
	lc->procs = NULL;
	lc->procs_fd = -1;
}

void logcap__server_seen(struct logcap *lc, uint32_t tgid)
{
	uint8_t one = 1;

	if (lc->procs_fd < 0 || u64map_get(lc->procs, tgid))
		return;
	if (bpf_map_update_elem(lc->procs_fd, &tgid, &one, BPF_ANY) ||
	    u64map_put(lc->procs, tgid, (void *)1)) {
		/* not marked as registered: tried again at its next request */
		bpf_map_delete_elem(lc->procs_fd, &tgid);
		STAT_INC(drop_log_procs_full);
	}
}

void logcap__proc_exited(struct logcap *lc, uint32_t tgid)
{
	if (lc->procs_fd < 0 || !u64map_del(lc->procs, tgid))
		return;
	bpf_map_delete_elem(lc->procs_fd, &tgid);
}

static uint8_t source_of(uint8_t stream)
{
	switch (stream) {
	case HT_LOG_STDOUT:
		return SPAN_LOG_STDOUT;
	case HT_LOG_STDERR:
		return SPAN_LOG_STDERR;
	default:
		return SPAN_LOG_FILE;
	}
}

/* The lines of a request are request state until its span is built: charged once. */
static bool charge_logs(struct exchange_env *env, struct exchange *ex)
{
	if (ex->logs_charged)
		return ex->partial != NULL; /* NULL: its allocation failed, no lines */
	if (!mem_budget__charge(env->budget, LOGCAP_EXCHANGE_COST))
		return false;
	ex->logs_charged = true;
	ex->partial = malloc(sizeof(*ex->partial));
	if (!ex->partial)
		return false;
	ex->partial->source = 0;
	ex->partial->len = 0;
	ex->partial->cut = false;
	return true;
}

/* The pending line, complete: redacted onto the events. */
static void emit_partial(struct exchange *ex)
{
	struct log_partial *p = ex->partial;
	char red[LOG_REDACT_CAP(LOGCAP_LINE_MAX)];
	size_t n = p->len, m;

	if (!p->source)
		return;
	if (n && p->buf[n - 1] == '\r')
		n--;
	if (n) {
		m = log_redact(p->buf, n, red, sizeof(red));
		if (span_events_add(&ex->events, &ex->dropped_events, p->time_unix_ns, p->source,
				    p->path, red, m, p->cut) == 0)
			STAT_INC(log_lines);
	}
	p->source = 0;
	p->len = 0;
	p->cut = false;
}

static void append_partial(struct log_partial *p, uint64_t t, uint8_t source, const char *path,
			   const char *data, size_t n)
{
	size_t room = sizeof(p->buf) - p->len;

	if (!p->source) {
		p->source = source;
		p->path = path;
		p->time_unix_ns = t;
	}
	if (n > room) {
		n = room;
		p->cut = true;
	}
	memcpy(p->buf + p->len, data, n);
	p->len += (uint16_t)n;
}

void logcap_feed(struct exchange_env *env, struct exchange *ex, uint64_t t, uint8_t source,
		 const char *path, const char *data, size_t len, bool truncated)
{
	struct log_partial *p;
	size_t pos = 0;

	if (!charge_logs(env, ex)) {
		ex->dropped_events++;
		STAT_INC(span_events_dropped);
		return;
	}
	p = ex->partial;
	/* a piece of another stream or file: the line pending there is over */
	if (p->source && (p->source != source || p->path != path))
		emit_partial(ex);
	while (pos < len) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - data) : len;

		append_partial(p, t, source, path, data + pos, end - pos);
		pos = end;
		if (nl) {
			emit_partial(ex);
			pos++;
		}
	}
	/* the rest of the write was not captured: whether its line ended is unknown */
	if (truncated && p->source) {
		p->cut = true;
		emit_partial(ex);
	}
}

void logcap_flush(struct exchange_env *env, struct exchange *ex)
{
	(void)env;
	if (ex->partial)
		emit_partial(ex);
}

void logcap__handle(struct logcap *lc, struct exchange_env *env, const struct ht_log_event *ev)
{
	const char *path = NULL;
	struct inflight *in;
	struct exchange *ex;

	if (!lc->procs) /* records only come with the option on; a stray one is ignored */
		return;
	switch (correlate__serving(env->corr, ev->tid, &in)) {
	case LOG_SERVING_NONE:
		STAT_INC(drop_log_no_request);
		return;
	case LOG_SERVING_SEVERAL:
		STAT_INC(drop_log_ambiguous);
		return;
	case LOG_SERVING_ONE:
		break;
	}
	/* the thread's request, read by it, in the process that wrote */
	if (in->tgid != ev->tgid || ev->ts_ns < in->start_ns) {
		STAT_INC(drop_log_no_request);
		return;
	}
	ex = (struct exchange *)((char *)in - offsetof(struct exchange, inflight));
	if (ex->not_exported) /* head sampling said no: its span carries no text */
		return;
	if (ev->stream == HT_LOG_FILE) {
		if (!lc->files || ev->file_index >= lc->files->n)
			return;
		path = lc->files->paths[ev->file_index];
	}
	logcap_feed(env, ex, (uint64_t)((int64_t)ev->ts_ns + env->mono_to_unix_ns),
		    source_of(ev->stream), path, ev->data,
		    ev->cap_len < HT_LOG_CAPTURE ? ev->cap_len : HT_LOG_CAPTURE,
		    ev->flags & HT_LOG_TRUNCATED);
}
