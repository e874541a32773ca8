/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Incremental HTTP/1.x message parser for one direction of one connection (RFC 9112).
 *
 * Pure: no I/O, no globals. It allocates only when a header block spans several feeds
 * (the usual head arrives in one read and is parsed in place). It is fed the bytes of
 * a byte stream in order, as captured by the BPF programs, which copy only the head of each
 * read/write. Bytes that were not captured are announced with http1_parser_gap(), so the
 * parser can skip bodies by Content-Length without seeing them and resynchronise on the next
 * start line when it loses track.
 *
 * Every feed carries an opaque 64-bit tag (the caller's timestamp of that I/O); the parser
 * reports the tag of the I/O where a message started and the one where it ended.
 */
#ifndef HOPTRACE_HTTP1_H
#define HOPTRACE_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP1_MAX_HEADER_BLOCK 16384 /* bytes from start line to the empty line, inclusive */
#define HTTP1_MAX_TRACESTATE_HDRS 8

enum http1_kind {
	HTTP1_REQUEST = 0,  /* the stream carries requests (client -> server) */
	HTTP1_RESPONSE = 1, /* the stream carries responses (server -> client) */
};

/* A string inside the parser's header buffer; valid only during the on_head callback. */
struct http1_str {
	const char *p;
	size_t len;
};

/* What the parser extracts from a start line and header block. */
struct http1_head {
	enum http1_kind kind;
	uint8_t version_minor;	     /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
	struct http1_str method;     /* requests */
	struct http1_str target;     /* requests: request-target exactly as sent (path?query) */
	uint16_t status;	     /* responses */
	struct http1_str host;	     /* first Host header, OWS trimmed */
	struct http1_str user_agent; /* first User-Agent header, OWS trimmed */
	/* traceparent: count of headers named traceparent (any case); value of the first */
	unsigned traceparent_count;
	struct http1_str traceparent;
	/* every tracestate header value, in order (at most HTTP1_MAX_TRACESTATE_HDRS kept) */
	unsigned tracestate_count;
	struct http1_str tracestate[HTTP1_MAX_TRACESTATE_HDRS];
	int64_t content_length; /* -1 when absent */
	bool chunked;		/* Transfer-Encoding ends with chunked */
	bool conn_close;	/* Connection: close (or HTTP/1.0 without keep-alive) */
	bool expect_continue;	/* Expect: 100-continue */
	bool upgrade;		/* Upgrade header present */
	size_t header_bytes;	/* size of the start line + header block */
	uint64_t start_tag;	/* tag of the feed holding the first byte of the message */
};

/* What on_head tells the parser about the body of a response (the parser cannot know that
 * a response answers HEAD or CONNECT). Requests: return HTTP1_BODY_AUTO. */
enum http1_body_rule {
	HTTP1_BODY_AUTO = 0,   /* RFC 9112 6.3 framing from the headers */
	HTTP1_BODY_NONE = 1,   /* no body whatever the headers say (response to HEAD) */
	HTTP1_BODY_TUNNEL = 2, /* the stream stops being HTTP (2xx to CONNECT, 101) */
};

enum http1_error {
	HTTP1_ERR_BAD_START_LINE = 1,
	HTTP1_ERR_BAD_HEADER = 2,
	HTTP1_ERR_HEADER_TOO_LARGE = 3,
	HTTP1_ERR_BAD_CHUNK = 4,
	HTTP1_ERR_GAP_IN_HEADERS = 5, /* bytes of a header block were not captured */
	HTTP1_ERR_NOT_HTTP = 6,	      /* stream does not start with an HTTP start line */
	HTTP1_ERR_NO_MEMORY = 7,      /* on_buffer refused (or malloc failed) to hold a head */
};

struct http1_callbacks {
	/* A start line and complete header block were parsed. 1xx responses are reported
	 * too (head->status < 200); they never carry a body and are followed by the final
	 * response. */
	enum http1_body_rule (*on_head)(void *ctx, const struct http1_head *head);
	/* The message whose head was last reported is complete; end_tag is the tag of the
	 * feed holding its last byte. For a body delimited by the connection closing, this
	 * is called from http1_parser_eof(). */
	void (*on_complete)(void *ctx, enum http1_kind kind, uint64_t end_tag);
	/* The stream could not be parsed; the parser skips to the next I/O that starts with
	 * a start line. If a head was reported and not completed, that message is abandoned
	 * (no on_complete follows). */
	void (*on_error)(void *ctx, enum http1_error err);
	/* Optional: the buffer for a head split over reads grows from old_cap to new_cap
	 * bytes, or is freed (new_cap 0). A non-zero return refuses a growth: the message is
	 * then lost with HTTP1_ERR_NO_MEMORY. Lets the owner bound what parsers hold. */
	int (*on_buffer)(void *ctx, size_t old_cap, size_t new_cap);
};

enum http1_state {
	HTTP1_ST_IDLE = 0,   /* between messages: expecting a start line */
	HTTP1_ST_HEAD,	     /* inside a start line / header block */
	HTTP1_ST_BODY_LEN,   /* Content-Length body */
	HTTP1_ST_CHUNK_SIZE, /* chunked: in a chunk-size line */
	HTTP1_ST_CHUNK_DATA,
	HTTP1_ST_CHUNK_DATA_CRLF,
	HTTP1_ST_CHUNK_TRAILER,
	HTTP1_ST_CHUNK_LOST, /* chunked body with uncaptured bytes: wait for its end */
	HTTP1_ST_UNTIL_CLOSE,
	HTTP1_ST_RESYNC, /* lost track: wait for an I/O starting with a start line */
	HTTP1_ST_TUNNEL, /* not HTTP any more */
};

struct http1_parser {
	enum http1_kind kind;
	enum http1_state state;
	const struct http1_callbacks *cb;
	void *ctx;
	uint64_t body_left;   /* BODY_LEN / CHUNK_DATA: bytes left */
	uint64_t msg_tag;     /* start_tag of the message in progress */
	uint64_t last_tag;    /* tag of the last feed or gap */
	uint64_t lost_window; /* CHUNK_LOST: last bytes seen since the last gap, newest lowest */
	uint8_t lost_len;     /* CHUNK_LOST: bytes in lost_window, at most 8 */
	uint8_t eoh;	      /* HEAD: progress towards the empty line ending the block */
	bool start_pending;   /* HEAD: the bytes so far are only a prefix of a start line */
	uint8_t chunk_part;   /* CHUNK_SIZE: size digits, whitespace or extensions */
	bool chunk_size_digits;
	bool saw_cr;	      /* CHUNK_*: a CR was seen, a LF must follow */
	uint32_t line_len;    /* CHUNK_SIZE/TRAILER: bytes in the current line */
	uint32_t trailer_len; /* CHUNK_TRAILER: bytes of the trailer section */
	uint64_t chunk_size;
	size_t hdr_len; /* bytes in hdr */
	size_t hdr_cap; /* allocated size of hdr, 0 when not allocated */
	char *hdr;	/* head bytes carried over between feeds */
};

/* Prepare a parser for one direction. kind says what the stream carries. */
void http1_parser_init(struct http1_parser *p, enum http1_kind kind,
		       const struct http1_callbacks *cb, void *ctx);

/* Release the parser's buffer. The parser may be initialised again afterwards. */
void http1_parser_free(struct http1_parser *p);

/*
 * Feed bytes of the stream, in order. io_start is true when data[0] is the first byte of a
 * read/write (the parser resynchronises only at such boundaries). tag identifies the I/O.
 */
void http1_parser_feed(struct http1_parser *p, const uint8_t *data, size_t len, bool io_start,
		       uint64_t tag);

/* n bytes of the stream were not captured; they come after the last byte fed. */
void http1_parser_gap(struct http1_parser *p, uint64_t n, uint64_t tag);

/* The stream ended (peer closed, or connection gone). Completes an until-close body. */
void http1_parser_eof(struct http1_parser *p, uint64_t tag);

/* True if the parser lost track and waits for an I/O that starts with a start line: what
 * it was fed since then changed nothing. */
bool http1_parser_resyncing(const struct http1_parser *p);

/* True if the parser is inside a message (head started or body not finished). */
bool http1_parser_in_message(const struct http1_parser *p);

/* True if the bytes look like the start of an HTTP/1.x request or response line.
 * Used to classify connections and to resynchronise. */
bool http1_looks_like_start(const uint8_t *data, size_t len, enum http1_kind *kind);

/* True if the bytes begin an HTTP/1.x request or response line for certain, not only
 * something that may grow into one ("G", "HT"): a method, a space and the first byte of a
 * target, or "HTTP/1.". */
bool http1_is_start(const uint8_t *data, size_t len, enum http1_kind *kind);

#endif
