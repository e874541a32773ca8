// SPDX-License-Identifier: BSD-2-Clause
/*
 * Incremental HTTP/1.x parser (RFC 9112) for bytes captured from one direction of a socket.
 *
 * The parser is a state machine driven by feeds, gaps and end of stream. Each consume_*()
 * function handles one state: it takes bytes from the front of the current feed, returns how
 * many it used and may change the state, so several messages in one feed are reported in order.
 * A header block is parsed once, when its empty line has been seen: in place if it lies inside
 * one feed, else from a buffer that collected its pieces.
 */
#include "http1.h"
#include "text.h"

#include <stdlib.h>
#include <string.h>

/* Longest method accepted by http1_looks_like_start() for methods it does not know. */
#define METHOD_MAX_LEN 16
/* Enough bytes to decide whether a start line begins here: a method, SP and "http". */
#define START_PROBE_LEN 32
/* Bound on a chunk-size line with its extensions (RFC 9112 7.1.1 sets none; servers do). */
#define CHUNK_LINE_MAX 4096
/* Largest chunk size before the next hex digit could overflow an int64_t. */
#define CHUNK_SIZE_LIMIT ((uint64_t)INT64_MAX >> 4)
/* Initial size of the buffer that collects a header block spread over several feeds. */
#define HDR_BUF_MIN 1024

/* "0\r\n\r\n", the last-chunk and the empty trailer section, as the low 5 bytes of a window. */
#define LAST_CHUNK_PATTERN 0x300d0a0d0aULL
#define LAST_CHUNK_MASK 0xffffffffffULL

enum start_match {
	START_NO,
	START_PREFIX, /* the bytes end before a start line could be told apart from other data */
	START_YES,
};

/* Where the search for the empty line that ends a header block stands. */
enum head_end_state {
	EOH_IN_LINE = 0, /* inside a line */
	EOH_LINE_START,	 /* just after a LF */
	EOH_LINE_CR,	 /* after a LF and a CR */
};

/* Where the parser is inside a chunk-size line (RFC 9112 7.1). */
enum chunk_line_part {
	CHUNK_PART_SIZE = 0, /* hex digits */
	CHUNK_PART_BWS,	     /* whitespace after the digits, before ';' */
	CHUNK_PART_EXT,	     /* chunk extensions, skipped */
};

/* A parsed header block plus what framing needs and struct http1_head does not carry. */
struct head_scan {
	struct http1_head h;
	bool te_present;
	bool close_token;
	bool keep_alive_token;
};

static const struct http1_callbacks no_callbacks;

static const char *const known_methods[] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
};

/* ---- character classes ----------------------------------------------------------------- */

/* tchar, RFC 9110 5.6.2: DIGIT, ALPHA and !#$%&'*+-.^_`|~, one byte per ASCII code (every
 * byte of every header name goes through this) */
static const char tchar_table[128] =
    "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
    "\0\1\0\1\1\1\1\1\0\0\1\1\0\1\1\0\1\1\1\1\1\1\1\1\1\1\0\0\0\0\0\0"
    "\0\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\0\0\0\1\1"
    "\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\1\0\1\0\1\0";

static bool is_tchar(uint8_t c)
{
	return c < 128 && tchar_table[c];
}

/* Field values are VCHAR, obs-text, SP and HTAB (RFC 9110 5.5); CR, LF and NUL are never
 * allowed, and other controls are rejected too rather than guessed at. */
static bool is_field_char(uint8_t c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Every byte is a field char. Eight at a time first: a word is looked at byte by byte
 * only when it may hold a control (< 0x20, which includes HTAB) or DEL; header values are
 * most of the bytes the agent parses. */
static bool all_field_chars(const uint8_t *b, size_t n)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w, del;

		memcpy(&w, b + i, sizeof(w));
		del = w ^ (0x7f * ones);
		/* a byte < 0x20 (bytes >= 0x80 are obs-text, excluded by ~w), or a zero in del */
		if (((w - 0x20 * ones) & ~w & highs) || ((del - ones) & ~del & highs)) {
			for (size_t k = i; k < i + 8; k++)
				if (!is_field_char(b[k]))
					return false;
		}
	}
	for (; i < n; i++)
		if (!is_field_char(b[i]))
			return false;
	return true;
}

static bool is_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static uint8_t ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 'a' - 'A') : c;
}

/* Case-insensitive comparison of s with a lowercase literal. */
static bool str_is(struct http1_str s, const char *lit)
{
	size_t n = strlen(lit);

	if (s.len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (ascii_lower((uint8_t)s.p[i]) != (uint8_t)lit[i])
			return false;
	return true;
}

static struct http1_str trim_ows(const char *p, size_t len)
{
	while (len && is_ows((uint8_t)p[0])) {
		p++;
		len--;
	}
	while (len && is_ows((uint8_t)p[len - 1]))
		len--;
	return (struct http1_str){.p = p, .len = len};
}

/* ---- start line recognition ------------------------------------------------------------ */

static enum start_match match_status_start(const uint8_t *d, size_t n)
{
	static const char version[] = "HTTP/1.";
	size_t want = sizeof(version) - 1;
	size_t m = n < want ? n : want;

	if (memcmp(d, version, m) != 0)
		return START_NO;
	return n < want ? START_PREFIX : START_YES;
}

static bool is_known_method(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < sizeof(known_methods) / sizeof(known_methods[0]); i++)
		if (strlen(known_methods[i]) == n && memcmp(d, known_methods[i], n) == 0)
			return true;
	return false;
}

static bool is_method_start_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
}

/*
 * Known methods may be followed by any request-target (CONNECT takes an authority). Other
 * uppercase tokens only count when the target looks like one (origin, asterisk or absolute
 * form, RFC 9112 3.2), since a short uppercase word followed by a space is common in other
 * protocols and in bodies.
 */
static enum start_match match_target_start(bool known, const uint8_t *d, size_t n)
{
	static const char scheme[] = "http";
	size_t m;

	if (n == 0)
		return START_PREFIX;
	if (known)
		return (d[0] > 0x20 && d[0] != 0x7f) ? START_YES : START_NO;
	if (d[0] == '/' || d[0] == '*')
		return START_YES;
	m = n < 4 ? n : 4;
	for (size_t i = 0; i < m; i++)
		if (ascii_lower(d[i]) != (uint8_t)scheme[i])
			return START_NO;
	return n < 4 ? START_PREFIX : START_YES;
}

static enum start_match match_request_start(const uint8_t *d, size_t n)
{
	size_t i = 0;

	if (d[0] < 'A' || d[0] > 'Z')
		return START_NO;
	while (i < n && i <= METHOD_MAX_LEN && is_method_start_char(d[i]))
		i++;
	if (i > METHOD_MAX_LEN)
		return START_NO;
	if (i == n)
		return START_PREFIX;
	if (d[i] != ' ')
		return START_NO;
	return match_target_start(is_known_method(d, i), d + i + 1, n - i - 1);
}

static enum start_match match_start(enum http1_kind kind, const uint8_t *d, size_t n)
{
	if (n == 0)
		return START_PREFIX;
	return kind == HTTP1_RESPONSE ? match_status_start(d, n) : match_request_start(d, n);
}

bool http1_looks_like_start(const uint8_t *data, size_t len, enum http1_kind *kind)
{
	enum http1_kind k;

	if (!data || len == 0)
		return false;
	/* "H" and "HT" could also begin HEAD; a response is the likelier reading. */
	if (match_status_start(data, len) != START_NO)
		k = HTTP1_RESPONSE;
	else if (match_request_start(data, len) != START_NO)
		k = HTTP1_REQUEST;
	else
		return false;
	if (kind)
		*kind = k;
	return true;
}

bool http1_is_start(const uint8_t *data, size_t len, enum http1_kind *kind)
{
	enum http1_kind k;

	if (!data || len == 0)
		return false;
	if (match_status_start(data, len) == START_YES)
		k = HTTP1_RESPONSE;
	else if (match_request_start(data, len) == START_YES)
		k = HTTP1_REQUEST;
	else
		return false;
	if (kind)
		*kind = k;
	return true;
}

/* ---- state changes --------------------------------------------------------------------- */

static void release_buffer(struct http1_parser *p)
{
	if (p->hdr_cap && p->cb->on_buffer)
		p->cb->on_buffer(p->ctx, p->hdr_cap, 0);
	free(p->hdr);
	p->hdr = NULL;
	p->hdr_cap = 0;
	p->hdr_len = 0;
}

static void fail(struct http1_parser *p, enum http1_error err)
{
	release_buffer(p);
	p->state = HTTP1_ST_RESYNC;
	if (p->cb->on_error)
		p->cb->on_error(p->ctx, err);
}

static void finish_message(struct http1_parser *p, uint64_t end_tag, enum http1_state next)
{
	p->state = next;
	if (p->cb->on_complete)
		p->cb->on_complete(p->ctx, p->kind, end_tag);
}

static void begin_head(struct http1_parser *p, bool start_pending, uint64_t tag)
{
	p->state = HTTP1_ST_HEAD;
	p->msg_tag = tag;
	p->eoh = EOH_IN_LINE;
	p->start_pending = start_pending;
	p->hdr_len = 0;
}

static void begin_chunk_size_line(struct http1_parser *p)
{
	p->state = HTTP1_ST_CHUNK_SIZE;
	p->chunk_size = 0;
	p->chunk_size_digits = false;
	p->chunk_part = CHUNK_PART_SIZE;
	p->saw_cr = false;
	p->line_len = 0;
}

static void begin_chunk_lost(struct http1_parser *p)
{
	p->state = HTTP1_ST_CHUNK_LOST;
	p->lost_window = 0;
	p->lost_len = 0;
}

/* ---- header block ---------------------------------------------------------------------- */

/* Next line of a header block, without its LF or CR LF (RFC 9112 2.2 accepts a bare LF). */
static bool next_line(const char **cur, const char *end, struct http1_str *line)
{
	const char *lf = memchr(*cur, '\n', (size_t)(end - *cur));
	size_t len;

	if (!lf)
		return false;
	len = (size_t)(lf - *cur);
	if (len && (*cur)[len - 1] == '\r')
		len--;
	line->p = *cur;
	line->len = len;
	*cur = lf + 1;
	return true;
}

/* Next element of a comma-separated list (RFC 9110 5.6.1), OWS trimmed, empty ones included. */
static bool next_element(struct http1_str list, size_t *pos, struct http1_str *elem)
{
	const char *start, *comma;
	size_t left, n;

	if (*pos > list.len)
		return false;
	start = list.p + *pos;
	left = list.len - *pos;
	comma = memchr(start, ',', left);
	n = comma ? (size_t)(comma - start) : left;
	*elem = trim_ows(start, n);
	*pos += n + 1;
	return true;
}

static bool parse_version(const char *v, uint8_t *minor)
{
	if (memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
		return false;
	*minor = (uint8_t)(v[7] - '0');
	return true;
}

/* request-line = method SP request-target SP HTTP-version (RFC 9112 3) */
static enum http1_error parse_request_line(struct http1_head *h, struct http1_str l)
{
	const uint8_t *s = (const uint8_t *)l.p;
	size_t i = 0, t;

	while (i < l.len && is_tchar(s[i]))
		i++;
	if (i == 0 || i == l.len || s[i] != ' ')
		return HTTP1_ERR_BAD_START_LINE;
	t = ++i;
	while (i < l.len && s[i] > 0x20 && s[i] != 0x7f)
		i++;
	if (i == t || i == l.len || s[i] != ' ')
		return HTTP1_ERR_BAD_START_LINE;
	if (l.len - i - 1 != 8 || !parse_version(l.p + i + 1, &h->version_minor))
		return HTTP1_ERR_BAD_START_LINE;
	h->method = (struct http1_str){.p = l.p, .len = t - 1};
	h->target = (struct http1_str){.p = l.p + t, .len = i - t};
	return 0;
}

/*
 * status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 4). The SP before
 * an empty reason is often left out; clients accept that, so do we.
 */
static enum http1_error parse_status_line(struct http1_head *h, struct http1_str l)
{
	const uint8_t *s = (const uint8_t *)l.p;
	unsigned status = 0;

	if (l.len < 12 || !parse_version(l.p, &h->version_minor) || s[8] != ' ')
		return HTTP1_ERR_BAD_START_LINE;
	for (size_t i = 9; i < 12; i++) {
		if (s[i] < '0' || s[i] > '9')
			return HTTP1_ERR_BAD_START_LINE;
		status = status * 10 + (unsigned)(s[i] - '0');
	}
	if (status < 100)
		return HTTP1_ERR_BAD_START_LINE;
	if (l.len > 12 && s[12] != ' ')
		return HTTP1_ERR_BAD_START_LINE;
	for (size_t i = 13; i < l.len; i++)
		if (!is_field_char(s[i]))
			return HTTP1_ERR_BAD_START_LINE;
	h->status = (uint16_t)status;
	return 0;
}

/*
 * Content-Length = 1*DIGIT. A list of identical values, or repeated identical fields, is the
 * same length sent twice and is accepted; anything else makes the framing unknowable
 * (RFC 9110 8.6, RFC 9112 6.3 item 5).
 */
static enum http1_error note_content_length(struct head_scan *s, struct http1_str v)
{
	struct http1_str e;
	size_t pos = 0;

	while (next_element(v, &pos, &e)) {
		int64_t n = 0;

		if (e.len == 0)
			return HTTP1_ERR_BAD_HEADER;
		for (size_t i = 0; i < e.len; i++) {
			int d = e.p[i] - '0';

			if (d < 0 || d > 9 || n > (INT64_MAX - d) / 10)
				return HTTP1_ERR_BAD_HEADER;
			n = n * 10 + d;
		}
		if (s->h.content_length >= 0 && s->h.content_length != n)
			return HTTP1_ERR_BAD_HEADER;
		s->h.content_length = n;
	}
	return 0;
}

/* Only the last transfer coding decides the framing (RFC 9112 6.3 items 3 and 4); several
 * Transfer-Encoding fields form one list in order. */
static void note_transfer_encoding(struct head_scan *s, struct http1_str v)
{
	struct http1_str e;
	size_t pos = 0;

	while (next_element(v, &pos, &e)) {
		const char *semi = memchr(e.p, ';', e.len);
		struct http1_str coding = trim_ows(e.p, semi ? (size_t)(semi - e.p) : e.len);

		if (coding.len == 0)
			continue;
		s->te_present = true;
		s->h.chunked = str_is(coding, "chunked");
	}
}

/* Connection options (RFC 9110 7.6.1); keep-alive matters for HTTP/1.0 (RFC 9112 9.3). */
static void note_connection(struct head_scan *s, struct http1_str v)
{
	struct http1_str e;
	size_t pos = 0;

	while (next_element(v, &pos, &e)) {
		if (str_is(e, "close"))
			s->close_token = true;
		else if (str_is(e, "keep-alive"))
			s->keep_alive_token = true;
	}
}

static void note_trace_context(struct http1_head *h, struct http1_str name, struct http1_str v)
{
	if (str_is(name, "traceparent")) {
		if (h->traceparent_count++ == 0)
			h->traceparent = v;
	} else if (str_is(name, "tracestate")) {
		if (h->tracestate_count < HTTP1_MAX_TRACESTATE_HDRS)
			h->tracestate[h->tracestate_count++] = v;
	}
}

/* Record what the agent needs from one field; names are case-insensitive (RFC 9110 5.1). */
static enum http1_error note_field(struct head_scan *s, struct http1_str name, struct http1_str v)
{
	struct http1_head *h = &s->h;

	switch (name.len) {
	case 4:
		if (str_is(name, "host") && !h->host.p)
			h->host = v;
		break;
	case 6:
		if (str_is(name, "expect") && str_is(v, "100-continue"))
			h->expect_continue = true;
		break;
	case 7:
		if (str_is(name, "upgrade"))
			h->upgrade = true;
		break;
	case 10:
		if (str_is(name, "user-agent")) {
			if (!h->user_agent.p)
				h->user_agent = v;
		} else if (str_is(name, "connection")) {
			note_connection(s, v);
		} else {
			note_trace_context(h, name, v);
		}
		break;
	case 11:
		note_trace_context(h, name, v);
		break;
	case 14:
		if (str_is(name, "content-length"))
			return note_content_length(s, v);
		break;
	case 17:
		if (str_is(name, "transfer-encoding"))
			note_transfer_encoding(s, v);
		break;
	}
	return 0;
}

/* field-line = field-name ":" OWS field-value OWS (RFC 9112 5) */
static enum http1_error parse_field_line(struct head_scan *s, struct http1_str l)
{
	const uint8_t *b = (const uint8_t *)l.p;
	size_t i = 0;

	/* obs-fold, or whitespace after the start line: both rejected (RFC 9112 5.2, 2.2) */
	if (is_ows(b[0]))
		return HTTP1_ERR_BAD_HEADER;
	while (i < l.len && is_tchar(b[i]))
		i++;
	/* no whitespace allowed between name and colon (RFC 9112 5.1) */
	if (i == 0 || i == l.len || b[i] != ':')
		return HTTP1_ERR_BAD_HEADER;
	if (!all_field_chars(b + i + 1, l.len - i - 1))
		return HTTP1_ERR_BAD_HEADER;
	return note_field(s, (struct http1_str){.p = l.p, .len = i},
			  trim_ows(l.p + i + 1, l.len - i - 1));
}

/* buf holds exactly a start line and a header block ending with its empty line. */
static enum http1_error parse_head_block(const struct http1_parser *p, struct head_scan *s,
					 const char *buf, size_t len)
{
	const char *cur = buf, *end = buf + len;
	struct http1_str line;
	enum http1_error err;

	memset(s, 0, sizeof(*s));
	s->h.kind = p->kind;
	s->h.content_length = -1;
	s->h.header_bytes = len;
	s->h.start_tag = p->msg_tag;
	if (!next_line(&cur, end, &line) || line.len == 0)
		return HTTP1_ERR_BAD_START_LINE;
	if (p->kind == HTTP1_REQUEST)
		err = parse_request_line(&s->h, line);
	else
		err = parse_status_line(&s->h, line);
	if (err)
		return err;
	while (next_line(&cur, end, &line) && line.len > 0) {
		err = parse_field_line(s, line);
		if (err)
			return err;
	}
	/* A request whose last coding is not chunked has no knowable length (RFC 9112 6.3.4). */
	if (p->kind == HTTP1_REQUEST && s->te_present && !s->h.chunked)
		return HTTP1_ERR_BAD_HEADER;
	/* HTTP/1.0 connections close after each message unless kept alive (RFC 9112 9.3) */
	s->h.conn_close = s->close_token || (s->h.version_minor == 0 && !s->keep_alive_token);
	return 0;
}

static bool is_bodyless_status(uint16_t status)
{
	return status < 200 || status == 204 || status == 304;
}

/* Choose how the body ends: RFC 9112 6.3, in its order. */
static void begin_body(struct http1_parser *p, const struct head_scan *s, enum http1_body_rule rule,
		       uint64_t tag)
{
	const struct http1_head *h = &s->h;
	bool response = p->kind == HTTP1_RESPONSE;

	if (rule == HTTP1_BODY_TUNNEL) {
		finish_message(p, tag, HTTP1_ST_TUNNEL);
	} else if (rule == HTTP1_BODY_NONE || (response && is_bodyless_status(h->status))) {
		/* item 1; a 1xx is followed by the final response to the same request */
		finish_message(p, tag, HTTP1_ST_IDLE);
	} else if (s->te_present) {
		/* items 3 and 4: Transfer-Encoding overrides Content-Length */
		if (h->chunked)
			begin_chunk_size_line(p);
		else
			p->state = HTTP1_ST_UNTIL_CLOSE;
	} else if (h->content_length > 0) {
		p->state = HTTP1_ST_BODY_LEN;
		p->body_left = (uint64_t)h->content_length;
	} else if (h->content_length == 0 || !response) {
		/* item 6: a request without framing headers has no body */
		finish_message(p, tag, HTTP1_ST_IDLE);
	} else {
		/* item 8 */
		p->state = HTTP1_ST_UNTIL_CLOSE;
	}
}

static void deliver_head(struct http1_parser *p, const char *buf, size_t len, uint64_t tag)
{
	enum http1_body_rule rule = HTTP1_BODY_AUTO;
	struct head_scan s;
	enum http1_error err = parse_head_block(p, &s, buf, len);

	if (err) {
		fail(p, err);
		return;
	}
	if (p->cb->on_head)
		rule = p->cb->on_head(p->ctx, &s.h);
	/* the head's strings were valid during on_head only; the buffer is not needed now */
	release_buffer(p);
	begin_body(p, &s, rule, tag);
}

/* ---- consumers, one per state ---------------------------------------------------------- */

static size_t consume_idle(struct http1_parser *p, const uint8_t *d, size_t n, uint64_t tag)
{
	size_t i = 0;

	/* RFC 9112 2.2: ignore empty lines before a start line */
	while (i < n && (d[i] == '\r' || d[i] == '\n'))
		i++;
	if (i == n)
		return n;
	/* A prefix is accepted: a head's first bytes may come in a write of their own. */
	switch (match_start(p->kind, d + i, n - i)) {
	case START_NO:
		fail(p, HTTP1_ERR_NOT_HTTP);
		return n;
	case START_PREFIX:
		begin_head(p, true, tag);
		break;
	case START_YES:
		begin_head(p, false, tag);
		break;
	}
	return i;
}

/*
 * Advance the search for the empty line that ends a header block. On success *end is the
 * number of bytes of d up to and including its LF. The state survives between feeds, so no
 * byte is looked at twice.
 */
static bool find_head_end(struct http1_parser *p, const uint8_t *d, size_t n, size_t *end)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c;

		if (p->eoh == EOH_IN_LINE) {
			const uint8_t *lf = memchr(d + i, '\n', n - i);

			if (!lf)
				return false;
			i = (size_t)(lf - d) + 1;
			p->eoh = EOH_LINE_START;
			continue;
		}
		c = d[i++];
		if (c == '\n') {
			*end = i;
			return true;
		}
		p->eoh = (c == '\r' && p->eoh == EOH_LINE_START) ? EOH_LINE_CR : EOH_IN_LINE;
	}
	return false;
}

/* The head began with too few bytes to be sure it is a start line; look again with more. */
static bool confirm_start_line(struct http1_parser *p, const uint8_t *d, size_t n)
{
	uint8_t probe[START_PROBE_LEN];
	size_t have = p->hdr_len < START_PROBE_LEN ? p->hdr_len : START_PROBE_LEN;
	size_t more = n < START_PROBE_LEN - have ? n : START_PROBE_LEN - have;

	if (have)
		memcpy(probe, p->hdr, have);
	memcpy(probe + have, d, more);
	switch (match_start(p->kind, probe, have + more)) {
	case START_NO:
		fail(p, HTTP1_ERR_NOT_HTTP);
		return false;
	case START_YES:
		p->start_pending = false;
		break;
	case START_PREFIX:
		break;
	}
	return true;
}

static bool buffer_append(struct http1_parser *p, const uint8_t *d, size_t n)
{
	size_t need = p->hdr_len + n;

	if (need > p->hdr_cap) {
		size_t cap = p->hdr_cap ? p->hdr_cap : HDR_BUF_MIN;
		char *nb;

		while (cap < need)
			cap *= 2;
		if (cap > HTTP1_MAX_HEADER_BLOCK)
			cap = HTTP1_MAX_HEADER_BLOCK;
		if (cap < need)
			return false;
		if (p->cb->on_buffer && p->cb->on_buffer(p->ctx, p->hdr_cap, cap))
			return false;
		nb = realloc(p->hdr, cap);
		if (!nb) {
			if (p->cb->on_buffer)
				p->cb->on_buffer(p->ctx, cap, p->hdr_cap);
			return false;
		}
		p->hdr = nb;
		p->hdr_cap = cap;
	}
	memcpy(p->hdr + p->hdr_len, d, n);
	p->hdr_len = need;
	return true;
}

static size_t consume_head(struct http1_parser *p, const uint8_t *d, size_t n, uint64_t tag)
{
	size_t end = n, least_size;
	bool found;

	if (p->start_pending && !confirm_start_line(p, d, n))
		return n;
	found = find_head_end(p, d, n, &end);
	/* without its end in sight, the block is at least one byte longer than what we hold */
	least_size = p->hdr_len + end + (found ? 0 : 1);
	if (least_size > HTTP1_MAX_HEADER_BLOCK) {
		fail(p, HTTP1_ERR_HEADER_TOO_LARGE);
		return n;
	}
	if (found && p->hdr_len == 0) {
		deliver_head(p, (const char *)d, end, tag);
		return end;
	}
	/* least_size fits: only the allocation (or its owner's budget) can refuse */
	if (!buffer_append(p, d, end)) {
		fail(p, HTTP1_ERR_NO_MEMORY);
		return n;
	}
	if (found) {
		deliver_head(p, p->hdr, p->hdr_len, tag);
		/* heads split over reads are rare: an idle connection holds no buffer */
		release_buffer(p);
	}
	return end;
}

static size_t consume_body(struct http1_parser *p, size_t n, uint64_t tag)
{
	size_t take = (uint64_t)n < p->body_left ? n : (size_t)p->body_left;

	p->body_left -= take;
	if (p->body_left == 0)
		finish_message(p, tag, HTTP1_ST_IDLE);
	return take;
}

/* The byte after the chunk-size digits: BWS, then ';' and extensions (RFC 9112 7.1.1). */
static bool chunk_ext_byte(struct http1_parser *p, uint8_t c)
{
	if (p->chunk_part == CHUNK_PART_EXT)
		return is_field_char(c);
	if (c == ';')
		p->chunk_part = CHUNK_PART_EXT;
	else if (is_ows(c))
		p->chunk_part = CHUNK_PART_BWS;
	else
		return false;
	return true;
}

/* One byte of chunk-size [ chunk-ext ] before CR LF (RFC 9112 7.1). Extensions are skipped. */
static bool chunk_size_byte(struct http1_parser *p, uint8_t c)
{
	int v = hex_digit_value(c);

	if (c == '\r') {
		p->saw_cr = true;
		return true;
	}
	if (p->chunk_part == CHUNK_PART_SIZE && v >= 0) {
		if (p->chunk_size > CHUNK_SIZE_LIMIT)
			return false;
		p->chunk_size = p->chunk_size << 4 | (uint64_t)v;
		p->chunk_size_digits = true;
		return true;
	}
	return p->chunk_size_digits && chunk_ext_byte(p, c);
}

static void end_chunk_size_line(struct http1_parser *p)
{
	if (p->chunk_size == 0) {
		/* last-chunk: a trailer section follows, ended by an empty line (RFC 9112 7.1.2) */
		p->state = HTTP1_ST_CHUNK_TRAILER;
		p->line_len = 0;
		p->trailer_len = 0;
		p->saw_cr = false;
		return;
	}
	p->state = HTTP1_ST_CHUNK_DATA;
	p->body_left = p->chunk_size;
}

static size_t consume_chunk_size(struct http1_parser *p, const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (d[i] == '\n' && p->chunk_size_digits) {
			end_chunk_size_line(p);
			return i + 1;
		}
		/* a CR is only allowed right before the LF */
		if (d[i] == '\n' || p->saw_cr || ++p->line_len > CHUNK_LINE_MAX ||
		    !chunk_size_byte(p, d[i])) {
			fail(p, HTTP1_ERR_BAD_CHUNK);
			return n;
		}
	}
	return n;
}

static size_t consume_chunk_data(struct http1_parser *p, size_t n)
{
	size_t take = (uint64_t)n < p->body_left ? n : (size_t)p->body_left;

	p->body_left -= take;
	if (p->body_left == 0) {
		p->state = HTTP1_ST_CHUNK_DATA_CRLF;
		p->saw_cr = false;
	}
	return take;
}

/* chunk-data is followed by CRLF (a bare LF is accepted as everywhere else) */
static size_t consume_chunk_data_crlf(struct http1_parser *p, const uint8_t *d, size_t n)
{
	if (d[0] == '\r' && !p->saw_cr) {
		p->saw_cr = true;
		return 1;
	}
	if (d[0] == '\n') {
		begin_chunk_size_line(p);
		return 1;
	}
	fail(p, HTTP1_ERR_BAD_CHUNK);
	return n;
}

/* trailer-section CRLF (RFC 9112 7.1.2): fields are skipped, the empty line ends the message. */
static size_t consume_chunk_trailer(struct http1_parser *p, const uint8_t *d, size_t n,
				    uint64_t tag)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = d[i];

		if (++p->trailer_len > HTTP1_MAX_HEADER_BLOCK || (p->saw_cr && c != '\n')) {
			fail(p, HTTP1_ERR_BAD_CHUNK);
			return n;
		}
		if (c == '\n') {
			if (p->line_len == 0) {
				finish_message(p, tag, HTTP1_ST_IDLE);
				return i + 1;
			}
			p->line_len = 0;
			p->saw_cr = false;
		} else if (c == '\r') {
			p->saw_cr = true;
		} else {
			p->line_len++;
		}
	}
	return n;
}

/*
 * The window holds "0\r\n\r\n": a last-chunk without extensions and no trailers. Unless these
 * are the first bytes seen since the gap, the byte before must end the previous line, or
 * the '0' could be the end of a chunk size such as "10".
 */
static bool lost_window_ends_chunked(const struct http1_parser *p)
{
	if (p->lost_len < 5 || (p->lost_window & LAST_CHUNK_MASK) != LAST_CHUNK_PATTERN)
		return false;
	return p->lost_len == 5 || ((p->lost_window >> 40) & 0xff) == '\n';
}

static size_t consume_chunk_lost(struct http1_parser *p, const uint8_t *d, size_t n, uint64_t tag)
{
	for (size_t i = 0; i < n; i++) {
		p->lost_window = p->lost_window << 8 | d[i];
		if (p->lost_len < 8)
			p->lost_len++;
		if (lost_window_ends_chunked(p)) {
			finish_message(p, tag, HTTP1_ST_IDLE);
			return i + 1;
		}
	}
	return n;
}

static size_t consume(struct http1_parser *p, const uint8_t *d, size_t n, uint64_t tag)
{
	switch (p->state) {
	case HTTP1_ST_IDLE:
		return consume_idle(p, d, n, tag);
	case HTTP1_ST_HEAD:
		return consume_head(p, d, n, tag);
	case HTTP1_ST_BODY_LEN:
		return consume_body(p, n, tag);
	case HTTP1_ST_CHUNK_SIZE:
		return consume_chunk_size(p, d, n);
	case HTTP1_ST_CHUNK_DATA:
		return consume_chunk_data(p, n);
	case HTTP1_ST_CHUNK_DATA_CRLF:
		return consume_chunk_data_crlf(p, d, n);
	case HTTP1_ST_CHUNK_TRAILER:
		return consume_chunk_trailer(p, d, n, tag);
	case HTTP1_ST_CHUNK_LOST:
		return consume_chunk_lost(p, d, n, tag);
	case HTTP1_ST_UNTIL_CLOSE:
	case HTTP1_ST_RESYNC:
	case HTTP1_ST_TUNNEL:
		break;
	}
	return n;
}

/*
 * After losing track, the parser trusts only the first bytes of an I/O, and only a whole
 * method-and-target or "HTTP/1.": a short write of body bytes can look like a prefix of one.
 */
static void resync_at_io_start(struct http1_parser *p, const uint8_t *d, size_t n,
			       uint64_t prev_tag)
{
	if (p->state != HTTP1_ST_RESYNC && p->state != HTTP1_ST_CHUNK_LOST)
		return;
	if (match_start(p->kind, d, n) != START_YES)
		return;
	if (p->state == HTTP1_ST_CHUNK_LOST)
		/* the lost body ended somewhere in what came before this I/O */
		finish_message(p, prev_tag, HTTP1_ST_IDLE);
	else
		p->state = HTTP1_ST_IDLE;
}

/* ---- public API ------------------------------------------------------------------------ */

void http1_parser_init(struct http1_parser *p, enum http1_kind kind,
		       const struct http1_callbacks *cb, void *ctx)
{
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->state = HTTP1_ST_IDLE;
	p->cb = cb ? cb : &no_callbacks;
	p->ctx = ctx;
}

void http1_parser_free(struct http1_parser *p)
{
	release_buffer(p);
	p->state = HTTP1_ST_IDLE;
}

void http1_parser_feed(struct http1_parser *p, const uint8_t *data, size_t len, bool io_start,
		       uint64_t tag)
{
	uint64_t prev_tag = p->last_tag;
	size_t pos = 0;

	if (!data || len == 0)
		return;
	p->last_tag = tag;
	if (io_start)
		resync_at_io_start(p, data, len, prev_tag);
	/* every consumer uses at least one byte or moves from IDLE to HEAD, which then does */
	while (pos < len)
		pos += consume(p, data + pos, len - pos, tag);
}

static void gap_in_body_len(struct http1_parser *p, uint64_t n, uint64_t tag)
{
	if (n < p->body_left) {
		p->body_left -= n;
		return;
	}
	n -= p->body_left;
	p->body_left = 0;
	finish_message(p, tag, HTTP1_ST_IDLE);
	/* the rest of the gap held the start of whatever came next */
	if (n)
		fail(p, HTTP1_ERR_GAP_IN_HEADERS);
}

static void gap_in_chunk_data(struct http1_parser *p, uint64_t n)
{
	/* more than the chunk: the gap hides the next chunk-size line */
	if (n > p->body_left) {
		begin_chunk_lost(p);
		return;
	}
	p->body_left -= n;
	if (p->body_left == 0) {
		p->state = HTTP1_ST_CHUNK_DATA_CRLF;
		p->saw_cr = false;
	}
}

void http1_parser_gap(struct http1_parser *p, uint64_t n, uint64_t tag)
{
	if (n == 0)
		return;
	p->last_tag = tag;
	switch (p->state) {
	case HTTP1_ST_IDLE:
	case HTTP1_ST_HEAD:
		/* in IDLE the gap holds the start of the next head */
		fail(p, HTTP1_ERR_GAP_IN_HEADERS);
		break;
	case HTTP1_ST_BODY_LEN:
		gap_in_body_len(p, n, tag);
		break;
	case HTTP1_ST_CHUNK_DATA:
		gap_in_chunk_data(p, n);
		break;
	case HTTP1_ST_CHUNK_SIZE:
	case HTTP1_ST_CHUNK_DATA_CRLF:
	case HTTP1_ST_CHUNK_TRAILER:
		begin_chunk_lost(p);
		break;
	case HTTP1_ST_CHUNK_LOST:
		/* bytes before and after the gap are not adjacent */
		p->lost_window = 0;
		p->lost_len = 0;
		break;
	case HTTP1_ST_UNTIL_CLOSE:
	case HTTP1_ST_RESYNC:
	case HTTP1_ST_TUNNEL:
		break;
	}
}

/*
 * An until-close body ends here (RFC 9112 6.3 item 8); so does a chunked body whose end was
 * not captured, as the best guess. Any other message in progress was cut short and is
 * dropped without a report; callers that count those check http1_parser_in_message() first.
 */
void http1_parser_eof(struct http1_parser *p, uint64_t tag)
{
	if (p->state == HTTP1_ST_UNTIL_CLOSE || p->state == HTTP1_ST_CHUNK_LOST)
		finish_message(p, p->last_tag, HTTP1_ST_IDLE);
	release_buffer(p);
	p->state = HTTP1_ST_IDLE;
	p->last_tag = tag;
}

bool http1_parser_resyncing(const struct http1_parser *p)
{
	return p->state == HTTP1_ST_RESYNC || p->state == HTTP1_ST_CHUNK_LOST;
}

bool http1_parser_in_message(const struct http1_parser *p)
{
	switch (p->state) {
	case HTTP1_ST_IDLE:
	case HTTP1_ST_RESYNC:
	case HTTP1_ST_TUNNEL:
		return false;
	default:
		return true;
	}
}
