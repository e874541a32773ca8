// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * --repair=inject: put a traceparent header into outgoing plaintext HTTP/1.x requests of
 * selected processes that lack one. Loaded and attached only when asked for (agent/inject.c);
 * without the option none of this is loaded.
 *
 *   ht_inject_sockops  sock_ops on the cgroup v2 root. ACTIVE_ESTABLISHED (in softirq): put
 *                      the sockets marked when a selected task connected (sockio.bpf.c:
 *                      inject_mark_connect) in inject_socks. sock_ops programs cannot tell
 *                      the task before 6.10, so they do not choose.
 *   ht_inject_msg      sk_msg verdict on inject_socks, runs in the sending task: add one
 *                      traceparent line after the request line of a whole header block
 *                      that starts at a request boundary of the socket's HTTP/1 stream.
 *                      It follows the framing of every message written (inject_sock): the
 *                      Content-Length body after each header block is counted down and
 *                      never touched, whatever it looks like; where the framing is lost
 *                      (chunked, a split header block, an upgrade) nothing more is injected
 *                      on that socket.
 *   ht_inject_skb      no-op sk_skb verdict on inject_socks. Without it any socket in a
 *                      sockhash reads FIONREAD as 0 (regression of commit 929e30f93125,
 *                      measured in shared/research/kernel-facts.md section 3).
 *
 * Never corrupt a request: on any doubt the message passes unchanged.
 */
#include "common.bpf.h"
#include "inject.bpf.h"
#include <bpf/bpf_endian.h>

#define EEXIST 17
/* Bytes of the message head scanned for the header block. */
#define INJECT_SCAN_MAX 4096
/* "traceparent: 00-" 32 "-" 16 "-" 2 "\r\n" */
#define TP_LINE_LEN 70
#define TP_NAME_LEN 12 /* "traceparent:" */

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} inject_socks SEC(".maps");

/* Where the scan is in a Content-Length header line. */
enum cl_parse {
	CL_NONE = 0,
	CL_NAME,   /* in the name: skipping to its end */
	CL_COLON,  /* before the colon */
	CL_OWS,	   /* after the colon, before the digits */
	CL_DIGITS, /* in the value */
	CL_TRAIL,  /* whitespace after the value */
	CL_DONE,   /* the value ended with CR */
	CL_BAD,	   /* anything else: the body's length is unknown */
};

/* A Content-Length beyond this is taken as unknown (no real request body is that big, and
 * the count stays far from overflow). */
#define CL_MAX (1ULL << 40)

struct scan_state {
	__u32 len;	  /* scanned bytes */
	__u32 line_start; /* offset of the current line */
	__u32 first_crlf; /* offset just after the request line's CRLF, 0: not seen */
	__u32 hdr_end;	  /* offset just after the blank line, 0: not seen */
	__u32 has_tp;
	__u32 cl_count;	   /* Content-Length header lines */
	__u32 cl_name_end; /* offset just past the name "content-length" */
	__u32 unframed;	   /* Transfer-Encoding or Upgrade: the length of what follows is
			    * unknown to us */
	__u64 cl_value;
	__u8 cl_state; /* enum cl_parse */
	char prev;     /* the byte before the current one, 0 at the start */
	char _pad[6];
};

/* Room past the scanned bytes for the verifier: a header name is compared at any line start
 * below INJECT_SCAN_MAX (only on bytes of the message: framing_headers checks). */
#define NAME_PROBE 20

/* The scan's state is kept here, not on the stack: before 6.7 the verifier did not see a
 * bpf_loop callback's writes to its caller's stack and pruned the code after the loop as
 * dead (measured on Debian's 6.1: nothing was ever injected). A map value is unknown to
 * it. */
struct inject_scratch {
	char buf[INJECT_SCAN_MAX + NAME_PROBE];
	char line[TP_LINE_LEN + 2];
	struct scan_state st;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inject_scratch);
} inject_heap SEC(".maps");

SEC("sockops")
int ht_inject_sockops(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct inject_sock *mark;
	__u64 cookie;

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;
	if (!sk || skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	/* marked by the capture side when a selected task connected (inject_mark_connect) */
	mark = bpf_sk_storage_get(&inject_marks, sk, 0, 0);
	if (!mark || !mark->marked)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	if (bpf_sock_hash_update(skops, &inject_socks, &cookie, BPF_NOEXIST))
		stat_inc(HT_STAT_MAP_FULL);
	return 1;
}

#define LC(b, i, c) (ascii_lower((b)[i]) == (c))

/* Header names (any case) at the start of a line. The name alone: "Content-Length :" and
 * the like are caught by the value's parse, not missed. */
static __always_inline bool is_cl_name(const char *b)
{
	return LC(b, 0, 'c') && LC(b, 1, 'o') && LC(b, 2, 'n') && LC(b, 3, 't') && LC(b, 4, 'e') &&
	       LC(b, 5, 'n') && LC(b, 6, 't') && b[7] == '-' && LC(b, 8, 'l') && LC(b, 9, 'e') &&
	       LC(b, 10, 'n') && LC(b, 11, 'g') && LC(b, 12, 't') && LC(b, 13, 'h');
}
#define CL_NAME_LEN 14
#define TE_NAME_LEN 17
#define UPGRADE_NAME_LEN 8 /* with its separator */

static __always_inline bool is_te_name(const char *b)
{
	return LC(b, 0, 't') && LC(b, 1, 'r') && LC(b, 2, 'a') && LC(b, 3, 'n') && LC(b, 4, 's') &&
	       LC(b, 5, 'f') && LC(b, 6, 'e') && LC(b, 7, 'r') && b[8] == '-' && LC(b, 9, 'e') &&
	       LC(b, 10, 'n') && LC(b, 11, 'c') && LC(b, 12, 'o') && LC(b, 13, 'd') &&
	       LC(b, 14, 'i') && LC(b, 15, 'n') && LC(b, 16, 'g');
}

/* "Upgrade" and its separator: "Upgrade-Insecure-Requests" is another header. */
static __always_inline bool is_upgrade_name(const char *b)
{
	return LC(b, 0, 'u') && LC(b, 1, 'p') && LC(b, 2, 'g') && LC(b, 3, 'r') && LC(b, 4, 'a') &&
	       LC(b, 5, 'd') && LC(b, 6, 'e') && (b[7] == ':' || b[7] == ' ' || b[7] == '\t');
}

static __always_inline bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* One byte of a Content-Length line past its name: a single decimal value, with optional
 * whitespace around it; anything else (a list, a sign, a fold) is CL_BAD. */
static __always_inline void cl_step(struct scan_state *st, char c)
{
	switch (st->cl_state) {
	case CL_COLON:
		if (c == ':')
			st->cl_state = CL_OWS;
		else if (!is_ows(c))
			st->cl_state = CL_BAD;
		break;
	case CL_OWS:
		if (c >= '0' && c <= '9') {
			st->cl_value = c - '0';
			st->cl_state = CL_DIGITS;
		} else if (!is_ows(c)) {
			st->cl_state = CL_BAD;
		}
		break;
	case CL_DIGITS:
		if (c >= '0' && c <= '9' && st->cl_value < CL_MAX)
			st->cl_value = st->cl_value * 10 + (c - '0');
		else if (is_ows(c))
			st->cl_state = CL_TRAIL;
		else if (c == '\r')
			st->cl_state = CL_DONE;
		else
			st->cl_state = CL_BAD;
		break;
	case CL_TRAIL:
		if (c == '\r')
			st->cl_state = CL_DONE;
		else if (!is_ows(c))
			st->cl_state = CL_BAD;
		break;
	}
}

/* At the start of a header line (i, avail bytes left in the message): note the headers
 * that decide the framing. */
static __always_inline void framing_headers(struct scan_state *st, const char *b, __u32 i,
					    __u32 avail)
{
	if (avail >= CL_NAME_LEN && is_cl_name(b)) {
		st->cl_count++;
		st->cl_state = CL_NAME;
		st->cl_name_end = i + CL_NAME_LEN;
	} else if ((avail >= TE_NAME_LEN && is_te_name(b)) ||
		   (avail >= UPGRADE_NAME_LEN && is_upgrade_name(b))) {
		st->unframed = 1;
	}
}

static long scan_cb(__u32 n, void *unused)
{
	__u32 zero = 0;
	struct inject_scratch *s = bpf_map_lookup_elem(&inject_heap, &zero);
	struct scan_state *st;
	__u64 i = n;
	char prev;

	/* the verifier tracks the 64-bit register: bound that one (clang would check a copy) */
	asm volatile("" : "+r"(i));
	if (!s)
		return 1;
	st = &s->st;
	if (i >= INJECT_SCAN_MAX || i >= st->len)
		return 1;
	if (st->first_crlf && i == st->line_start && i + TP_NAME_LEN <= st->len &&
	    i < INJECT_SCAN_MAX - TP_NAME_LEN) {
		if (is_tp_name(&s->buf[i]))
			st->has_tp = 1;
	}
	if (st->first_crlf && i == st->line_start)
		framing_headers(st, &s->buf[i], (__u32)i, st->len - (__u32)i);
	if (st->cl_state == CL_NAME && i + 1 == st->cl_name_end)
		st->cl_state = CL_COLON; /* the name's last byte: the parse starts after it */
	else if (st->cl_state > CL_NAME && st->cl_state < CL_DONE)
		cl_step(st, s->buf[i]);
	/* the byte before is kept rather than read at i - 1: before 6.x the verifier does not
	 * learn i >= 1 from i != 0 and refuses the read */
	prev = st->prev;
	st->prev = s->buf[i];
	if (s->buf[i] != '\n')
		return 0;
	if (prev != '\r')
		return 1; /* a bare LF (or one at the start): leave such a request alone */
	if (!st->first_crlf) {
		st->first_crlf = i + 1;
	} else if (i == st->line_start + 1) {
		st->hdr_end = i + 1;
		return 1;
	}
	st->line_start = i + 1;
	return 0;
}

static __always_inline bool is_request_line(const struct inject_scratch *s, __u32 first_crlf)
{
	const char *h;
	__u32 m = 0, v;

	/* METHOD SP ... SP HTTP/1.x CRLF */
	for (int j = 0; j < 8; j++) {
		char c = s->buf[j];

		if (c == ' ')
			break;
		if (c < 'A' || c > 'Z')
			return false;
		m++;
	}
	if (m < 3 || m > 7 || s->buf[m & 7] != ' ')
		return false;
	if (first_crlf < 16 || first_crlf > INJECT_SCAN_MAX) /* "GET / HTTP/1.1\r\n" */
		return false;
	v = first_crlf - 11; /* " HTTP/1.x\r\n" */
	if (v > INJECT_SCAN_MAX - 11)
		return false;
	if (s->buf[v] != ' ')
		return false;
	h = &s->buf[v + 1];
	return h[0] == 'H' && h[1] == 'T' && h[2] == 'T' && h[3] == 'P' && h[4] == '/' &&
	       h[5] == '1' && h[6] == '.' && (h[7] == '0' || h[7] == '1');
}

static __always_inline char hex_digit(__u32 d)
{
	d &= 15;
	return d < 10 ? '0' + d : 'a' + d - 10;
}

static __always_inline void hex_encode(char *dst, const __u8 *src, int n)
{
	for (int j = 0; j < n; j++) {
		dst[2 * j] = hex_digit(src[j] >> 4);
		dst[2 * j + 1] = hex_digit(src[j]);
	}
}

/* The ids to inject: a child of the server span the thread serves (one request, read with
 * blocking I/O, not answered yet, younger than HT_CTX_MAX_AGE_NS), else a new root. */
static __always_inline void choose_ids(struct ht_ctx_ids *ids, __u64 pid_tgid)
{
	struct server_ctx *sc = bpf_map_lookup_elem(&server_ctxs, &pid_tgid);

	if (sc && sc->inflight == 1 && !sc->nonblocking && server_ctx_live(sc)) {
		__builtin_memcpy(ids->trace_id, sc->ids.trace_id, 16);
		__builtin_memcpy(ids->parent_id, sc->ids.span_id, 8);
		ids->flags = sc->ids.flags;
	} else {
		random_bytes(ids->trace_id, 16);
		ids->flags = 1;
		sampler_mark(ids, false);
	}
	random_bytes(ids->span_id, 8);
	ids->span_id[0] |= 1; /* never all zero */
}

static __always_inline void build_line(struct inject_scratch *s, const struct ht_ctx_ids *ids)
{
	char *l = s->line;

	l[0] = 't';
	l[1] = 'r';
	l[2] = 'a';
	l[3] = 'c';
	l[4] = 'e';
	l[5] = 'p';
	l[6] = 'a';
	l[7] = 'r';
	l[8] = 'e';
	l[9] = 'n';
	l[10] = 't';
	l[11] = ':';
	l[12] = ' ';
	l[13] = '0';
	l[14] = '0';
	l[15] = '-';
	hex_encode(l + 16, ids->trace_id, 16);
	l[48] = '-';
	hex_encode(l + 49, ids->span_id, 8);
	l[65] = '-';
	l[66] = hex_digit(ids->flags >> 4);
	l[67] = hex_digit(ids->flags);
	l[68] = '\r';
	l[69] = '\n';
}

/* Is the request line that of CONNECT (a tunnel follows its headers)? */
static __always_inline bool is_connect(const struct inject_scratch *s)
{
	const char *b = s->buf;

	return b[0] == 'C' && b[1] == 'O' && b[2] == 'N' && b[3] == 'N' && b[4] == 'E' &&
	       b[5] == 'C' && b[6] == 'T' && b[7] == ' ';
}

/* A message of size bytes (the original size) whose head, a whole request head, was scanned
 * into s: where the socket's stream is after it. Only what we can be sure of keeps a
 * boundary: a body of known length, then nothing more in this message. */
static __always_inline void frame_after_head(struct inject_sock *is, const struct inject_scratch *s,
					     __u32 size)
{
	const struct scan_state *st = &s->st;
	__u64 body = 0, rest;

	is->framing = HT_FRAME_UNKNOWN;
	is->body_left = 0;
	if (st->unframed || st->cl_count > 1 || is_connect(s) || size < st->hdr_end)
		return;
	if (st->cl_count) {
		if (st->cl_state != CL_DONE || st->cl_value >= CL_MAX)
			return;
		body = st->cl_value;
	}
	rest = size - st->hdr_end;
	if (rest > body)
		return; /* the next request starts inside this message: no boundary we can use */
	is->body_left = body - rest;
	is->framing = is->body_left ? HT_FRAME_BODY : HT_FRAME_BOUNDARY;
}

/* A message written while a body is owed: all of it, or its first body_left bytes, are body. */
static __always_inline void frame_body(struct inject_sock *is, __u32 size)
{
	if (size > is->body_left) {
		/* the body ends inside this message and more follows: a request we cannot see
		 * the start of */
		is->framing = HT_FRAME_UNKNOWN;
		is->body_left = 0;
		return;
	}
	is->body_left -= size;
	if (!is->body_left)
		is->framing = HT_FRAME_BOUNDARY;
}

/* Copy the head of the message into the scratch and scan it. Returns the scratch when the
 * message starts with a request line, else NULL. */
static __always_inline struct inject_scratch *scan_head(struct sk_msg_md *msg)
{
	struct inject_scratch *s;
	__u32 zero = 0;
	__u64 len;
	void *data, *data_end;

	if (msg->size < 16)
		return NULL;
	len = msg->size < INJECT_SCAN_MAX ? msg->size : INJECT_SCAN_MAX;
	/* make the head linear so it can be read in one copy */
	if (bpf_msg_pull_data(msg, 0, len, 0))
		return NULL;
	data = msg->data;
	data_end = msg->data_end;
	if (data_end - data < 16)
		return NULL;
	if ((__u64)(data_end - data) < len)
		len = data_end - data;
	s = bpf_map_lookup_elem(&inject_heap, &zero);
	if (!s)
		return NULL;
	/* quick reject before copying: requests start with an upper-case method */
	if (data + 1 > data_end || *(char *)data < 'A' || *(char *)data > 'Z')
		return NULL;
	/* not zeroed: nothing at or past len is ever read */
	asm volatile("" : "+r"(len)); /* check the register the call uses (clang copies it) */
	if (len > INJECT_SCAN_MAX)
		return NULL;
	if (bpf_probe_read_kernel(s->buf, len, data))
		return NULL;
	__builtin_memset(&s->st, 0, sizeof(s->st));
	s->st.len = len;
	bpf_loop(INJECT_SCAN_MAX, scan_cb, NULL, 0);
	if (!s->st.first_crlf || !is_request_line(s, s->st.first_crlf))
		return NULL;
	return s;
}

/* Insert the traceparent line built in s at offset at. Returns 0 when it is in, 1 when the
 * message goes unchanged, -1 when it must be dropped. */
static __always_inline int insert_line(struct sk_msg_md *msg, struct inject_scratch *s, __u32 at,
				       struct inject_sock *is)
{
	void *data, *data_end;
	char *p;

	if (bpf_msg_push_data(msg, at, TP_LINE_LEN, 0)) {
		stat_inc(HT_STAT_INJECT_PUSH_FAIL);
		return 1;
	}
	/* From here the message holds TP_LINE_LEN uninitialised bytes: fill them or drop it
	 * (the stream is then broken: follow it no more). One linear element for the whole
	 * message also avoids the Nagle stall of a message split into several elements
	 * (kernel-facts.md section 3); if that is too big, pull just the head. */
	if (bpf_msg_pull_data(msg, 0, msg->size, 0) &&
	    bpf_msg_pull_data(msg, 0, at + TP_LINE_LEN, 0))
		goto drop;
	data = msg->data;
	data_end = msg->data_end;
	p = data + at;
	if ((void *)p + TP_LINE_LEN > data_end)
		goto drop;
	for (int j = 0; j < TP_LINE_LEN; j++)
		p[j] = s->line[j];
	return 0;
drop:
	stat_inc(HT_STAT_INJECT_PUSH_FAIL);
	is->framing = HT_FRAME_UNKNOWN;
	return -1;
}

SEC("sk_msg")
int ht_inject_msg(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	struct handoff ho = {};
	struct inject_scratch *s;
	struct inject_sock *is;
	__u32 size = msg->size, at;
	__u64 pid_tgid;
	int inserted;

	if (!sk || !size)
		return SK_PASS;
	/* every enrolled socket has it: sock_ops enrolled it because it was marked */
	is = bpf_sk_storage_get(&inject_marks, sk, 0, 0);
	if (!is)
		return SK_PASS;
	if (is->framing == HT_FRAME_BODY) {
		frame_body(is, size);
		return SK_PASS; /* body bytes, whatever they look like */
	}
	s = scan_head(msg);
	if (is->framing != HT_FRAME_BOUNDARY) {
		if (s && s->st.hdr_end)
			stat_inc(
			    HT_STAT_INJECT_UNFRAMED); /* a request, or bytes that look like one */
		return SK_PASS;
	}
	if (!s) {
		is->framing =
		    HT_FRAME_UNKNOWN; /* not a whole request line: not HTTP as we know it */
		return SK_PASS;
	}
	if (!s->st.hdr_end) {
		is->framing = HT_FRAME_UNKNOWN;
		stat_inc(HT_STAT_INJECT_PARTIAL);
		return SK_PASS;
	}
	frame_after_head(is, s, size);
	if (s->st.has_tp) {
		stat_inc(HT_STAT_INJECT_HAS_TP);
		return SK_PASS;
	}
	at = s->st.first_crlf;
	if (at > INJECT_SCAN_MAX)
		return SK_PASS;
	pid_tgid = bpf_get_current_pid_tgid();
	choose_ids(&ho.ids, pid_tgid);
	ho.lport = (__u16)msg->local_port;
	ho.rport = (__u16)bpf_ntohl(msg->remote_port);
	build_line(s, &ho.ids);
	inserted = insert_line(msg, s, at, is);
	if (inserted)
		return inserted < 0 ? SK_DROP : SK_PASS;
	stat_inc(HT_STAT_INJECTED);
	/* the send handler of this write reports these ids with the request */
	if (bpf_map_update_elem(&inject_handoff, &pid_tgid, &ho, BPF_ANY))
		stat_inc(HT_STAT_MAP_FULL);
	return SK_PASS;
}

SEC("sk_skb")
int ht_inject_skb(struct __sk_buff *skb)
{
	return SK_PASS;
}
