/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The capture policy shared by the socket path (sockio.bpf.c) and the TLS path
 * (tls.bpf.c): how a stream is classified, how many bytes of each I/O are copied (the
 * header window), and how an ht_data_event is assembled and emitted. The caller locates
 * the bytes (struct io_source) and fills the event header; everything else is here, so
 * both paths hand userspace the same kind of records.
 */
#ifndef HOPTRACE_CAPTURE_BPF_H
#define HOPTRACE_CAPTURE_BPF_H

#include "common.bpf.h"
#include "inject.bpf.h"
#include <bpf/bpf_endian.h>

/* Per-stream capture state: one per socket (sock_states) or per TLS session (tls_states). */
struct stream_state {
	__u64 pos[2];	     /* bytes seen per direction since the state was created */
	__u32 hdr_window[2]; /* bytes still copied in full as a possible header block */
	__u8 proto;	     /* enum ht_proto */
	__u8 tries;	     /* I/Os seen while unclassified */
	__u8 tls_like;	     /* classified HT_PROTO_OTHER because it carried TLS records */
	__u8 _pad[5];
};

/* The event is assembled here (too big for the 512-byte stack). Offsets and lengths are
 * bounded with masks the verifier can see (offset <= MAX-1, length <= 2*MAX-1), so the data
 * area is three times the largest capture although at most MAX bytes are ever used. */
/* --repair=inject: where the incoming traceparent header is in a captured header block. */
struct tp_scan {
	__u32 len;
	__u32 line_start;
	__u32 found; /* offset of the header + 1, 0: none */
	__u32 in_headers;
};

struct capture_scratch {
	struct ht_data_event ev;
	__u8 data[3 * HT_MAX_CAPTURE];
	__u32 have; /* bytes of the I/O already in data (capture_head) */
	/* The bpf_loop scan's state lives here, not on the stack: before 6.7 the verifier did
	 * not see a callback's writes to its caller's stack and pruned the code after the loop
	 * as dead (measured on Debian's 6.1). A map value is unknown to it. */
	struct tp_scan scan;
};

/* A single-buffer I/O of an HTTP stream up to this size is copied whole by capture_head:
 * one copy instead of a head then the rest. Requests and small responses are that size. */
#define HT_SMALL_IO 1024

/* clang may re-materialise a value from an unbounded register after a range check; an AND
 * in inline asm pins the bound on the register the helper call actually uses. */
#define BOUND(v, mask) asm volatile("%[x] &= %[m]" : [x] "+r"(v) : [m] "i"(mask))
#define OFF_MASK (HT_MAX_CAPTURE - 1)
#define LEN_MASK (2 * HT_MAX_CAPTURE - 1)

/* One slot per CPU (the loader sizes it). A plain array indexed by CPU rather than a
 * PERCPU_ARRAY, whose values are limited to 32 KiB. Shared by every program that emits
 * data events. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct capture_scratch);
} capture_heap SEC(".maps") __shared;

static __always_inline struct capture_scratch *scratch_get(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&capture_heap, &cpu);
}

/* Where the bytes of the current I/O live in user memory. */
struct io_source {
	const void *buf;	 /* single buffer, or NULL */
	const struct iovec *iov; /* vector, when buf is NULL */
	__u32 iovcnt;
	__s32 fd;
};

static __always_inline bool ends_header_block(const __u8 *data, __u32 len);

/* Copy up to want bytes (<= HT_MAX_CAPTURE) of the I/O into dst. Returns bytes copied, or
 * -1 on a read fault. stop_at_headers: for a vectored I/O, stop after the segment that ends
 * the header block (servers like nginx write the headers in their own iovec): the body that
 * follows is not needed, only its size. */
static __always_inline int copy_payload(__u8 *dst, const struct io_source *src, __u32 want,
					bool stop_at_headers)
{
	__u64 off = 0;

	if (want > HT_MAX_CAPTURE)
		want = HT_MAX_CAPTURE;
	if (src->buf) {
		__u64 n = want;

		BOUND(n, LEN_MASK);
		if (bpf_probe_read_user(dst, n, src->buf))
			return -1;
		return (int)want;
	}
#pragma unroll
	for (int i = 0; i < HT_MAX_IOVECS; i++) {
		struct iovec v;
		__u64 n;

		if ((__u32)i >= src->iovcnt || off >= want)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), &src->iov[i]))
			return -1;
		n = v.iov_len > want - off ? want - off : v.iov_len;
		BOUND(off, OFF_MASK);
		BOUND(n, LEN_MASK);
		if (n && bpf_probe_read_user(dst + off, n, v.iov_base))
			return -1;
		off += n;
		if (stop_at_headers && n && ends_header_block(dst, (__u32)off))
			break;
	}
	return (int)off;
}

/* Copy the last HT_TAIL_BYTES of an I/O of len bytes when they sit in one segment. */
static __always_inline __u8 copy_tail(__u8 *dst, const struct io_source *src, __u32 len)
{
	__u64 start = 0;

	if (len < HT_TAIL_BYTES)
		return 0;
	if (src->buf) {
		if (bpf_probe_read_user(dst, HT_TAIL_BYTES, src->buf + len - HT_TAIL_BYTES))
			return 0;
		return HT_TAIL_BYTES;
	}
#pragma unroll
	for (int i = 0; i < HT_MAX_IOVECS; i++) {
		struct iovec v;

		if ((__u32)i >= src->iovcnt)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), &src->iov[i]))
			return 0;
		if (start + v.iov_len >= len) {
			__u64 in_seg = len - start;

			if (in_seg < HT_TAIL_BYTES)
				return 0; /* tail spans two segments: rare, skip it */
			if (bpf_probe_read_user(dst, HT_TAIL_BYTES,
						v.iov_base + in_seg - HT_TAIL_BYTES))
				return 0;
			return HT_TAIL_BYTES;
		}
		start += v.iov_len;
	}
	return 0;
}

static __always_inline __u32 load_u32(const __u8 *p)
{
	return (__u32)p[0] | (__u32)p[1] << 8 | (__u32)p[2] << 16 | (__u32)p[3] << 24;
}

#define FOURCC(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

/* The request-target after "METHOD ": origin-form '/', absolute-form 'h'(ttp), '*'. */
static __always_inline bool target_start(__u8 c)
{
	return c == '/' || c == 'h' || c == '*';
}

/* A cheap test on the first bytes of an I/O: does an HTTP/1.x request or status line start
 * here? Userspace parses for real; this only decides what to copy. Checking the character
 * after the method keeps look-alike protocols out (a Redis inline "GET key" is not HTTP). */
static __always_inline bool looks_like_start_line(const __u8 *p, __u32 len)
{
	__u32 w;

	if (len < 6)
		return false;
	w = load_u32(p);
	switch (w) {
	case FOURCC('G', 'E', 'T', ' '):
	case FOURCC('P', 'U', 'T', ' '):
		return target_start(p[4]);
	case FOURCC('P', 'O', 'S', 'T'):
	case FOURCC('H', 'E', 'A', 'D'):
		return p[4] == ' ' && target_start(p[5]);
	case FOURCC('H', 'T', 'T', 'P'):
		return p[4] == '/' && p[5] == '1';
	case FOURCC('P', 'A', 'T', 'C'): /* PATCH / */
		return len >= 7 && p[4] == 'H' && p[5] == ' ' && target_start(p[6]);
	case FOURCC('D', 'E', 'L', 'E'): /* DELETE / */
		return len >= 8 && p[6] == ' ' && target_start(p[7]);
	case FOURCC('O', 'P', 'T', 'I'): /* OPTIONS, CONNECT: the target is past the 8 bytes */
	case FOURCC('C', 'O', 'N', 'N'):
		return len >= 8 && p[7] == ' ';
	case FOURCC('T', 'R', 'A', 'C'): /* TRACE / */
		return len >= 7 && p[5] == ' ' && target_start(p[6]);
	}
	return false;
}

/* TLS record header: handshake/alert/application data, version 3.x. */
static __always_inline bool looks_like_tls(const __u8 *p, __u32 len)
{
	return len >= 3 && p[0] >= 0x14 && p[0] <= 0x17 && p[1] == 3 && p[2] <= 4;
}

static __always_inline bool ends_header_block(const __u8 *data, __u32 len)
{
	__u64 i;

	if (len < 4)
		return false;
	i = len - 4;
	BOUND(i, LEN_MASK);
	return data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n';
}

/* A field of a socket: a direct load through a BTF pointer (tp_btf and fexit programs hold
 * trusted ones), else a probe read (tracepoint and uprobe programs hold plain addresses).
 * trusted is a constant in every caller, so only one side is compiled. */
#define SK_READ(trusted, sk, field) ((trusted) ? (sk)->field : BPF_CORE_READ(sk, field))

#ifndef O_NONBLOCK
#define O_NONBLOCK 04000 /* asm-generic/fcntl.h: the same on x86-64 and arm64 */
#endif

/* HT_DATA_NONBLOCK when the socket's file is in non-blocking mode. Probe reads on every
 * backend: socket->file is not a trusted pointer for the verifier. */
static __always_inline __u16 sock_nonblock_flag(struct sock *sk)
{
	unsigned int f_flags = BPF_CORE_READ(sk, sk_socket, file, f_flags);

	return (f_flags & O_NONBLOCK) ? HT_DATA_NONBLOCK : 0;
}

/* Endpoints of a socket as the owning process sees them. */
static __always_inline void fill_tuple(struct sock *sk, struct ht_tuple *t, bool trusted)
{
	__u16 family = SK_READ(trusted, sk, __sk_common.skc_family);

	t->family = family;
	t->lport = SK_READ(trusted, sk, __sk_common.skc_num);
	t->rport = bpf_ntohs(SK_READ(trusted, sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__u32 l = SK_READ(trusted, sk, __sk_common.skc_rcv_saddr);
		__u32 r = SK_READ(trusted, sk, __sk_common.skc_daddr);

		/* stored as IPv4-mapped IPv6 so both families share one layout */
		t->laddr[10] = t->laddr[11] = 0xff;
		t->raddr[10] = t->raddr[11] = 0xff;
		__builtin_memcpy(&t->laddr[12], &l, 4);
		__builtin_memcpy(&t->raddr[12], &r, 4);
	} else {
		bpf_probe_read_kernel(t->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(t->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* --port: is either end of the connection a selected port? */
static __always_inline bool ports_selected(__u16 lport, __u16 rport)
{
	__u32 l = lport, r = rport;
	__u8 *lv = bpf_map_lookup_elem(&selected_ports, &l);
	__u8 *rv = bpf_map_lookup_elem(&selected_ports, &r);

	return (lv && *lv) || (rv && *rv);
}

/* How many bytes of this I/O to copy, and the header window left afterwards. A start line
 * opens a window of HT_HEADER_WINDOW bytes copied in full, over as many I/Os as it takes;
 * it closes early when a copy ends with the empty line. Other I/Os are body: only a peek. */
static __always_inline __u32 capture_size(struct stream_state *st, __u8 dir, bool start, __u32 len)
{
	__u32 cap = capture_bytes;
	__u32 window;

	if (cap > HT_MAX_CAPTURE)
		cap = HT_MAX_CAPTURE;
	if (start)
		window = HT_HEADER_WINDOW;
	else
		window = st->hdr_window[dir & 1];
	if (window == 0) {
		cap = HT_BODY_PEEK;
	} else if (cap > window) {
		cap = window;
	}
	if (cap > len)
		cap = len;
	st->hdr_window[dir & 1] = len >= window ? 0 : window - len;
	return cap;
}

/* Classify an unclassified stream from the first bytes of an I/O. Returns the class. */
static __always_inline __u8 classify(struct stream_state *st, bool start, const __u8 *head, __u32 n)
{
	if (start) {
		st->proto = HT_PROTO_HTTP1;
	} else if (looks_like_tls(head, n)) {
		st->proto = HT_PROTO_OTHER;
		st->tls_like = 1;
		stat_inc(HT_STAT_NOT_HTTP);
	} else if (++st->tries > HT_CLASSIFY_TRIES) {
		st->proto = HT_PROTO_OTHER;
		stat_inc(HT_STAT_NOT_HTTP);
	}
	return st->proto;
}

/* First step of a capture: copy the head of the I/O (len > 0 bytes) into s->data and
 * classify an unclassified stream. Returns 1 when a start line begins here, 0 for other
 * bytes of an HTTP stream, -1 when there is nothing to emit (not HTTP, or a read fault). */
static __always_inline int capture_head(struct capture_scratch *s, struct stream_state *st,
					const struct io_source *src, __u32 len)
{
	__u32 head_len = len < 8 ? len : 8;
	int copied;
	bool start;

	if (st->proto == HT_PROTO_HTTP1 && src->buf && len <= HT_SMALL_IO)
		head_len = len;
	copied = copy_payload(s->data, src, head_len, false);
	if (copied < 0) {
		stat_inc(HT_STAT_READ_FAULT);
		return -1;
	}
	s->have = (__u32)copied;
	start = looks_like_start_line(s->data, (__u32)copied);
	if (st->proto == HT_PROTO_UNKNOWN &&
	    classify(st, start, s->data, (__u32)copied) != HT_PROTO_HTTP1)
		return -1;
	return start;
}

#ifdef HT_INJECT_CTX
/* Programs built with HT_INJECT_CTX report the trace context of --repair=inject. The scan
 * needs bpf_loop (5.17); a program that merely contains a bpf_loop callback does not load
 * before 5.13, so the programs meant for older kernels are built without it. */
static long tp_scan_cb(__u32 n, void *unused)
{
	struct capture_scratch *s = scratch_get();
	struct tp_scan *st;
	__u64 i = n;

	asm volatile("" : "+r"(i)); /* bound the register that is used */
	if (!s)
		return 1;
	st = &s->scan;
	if (i >= HT_MAX_CAPTURE || i >= st->len)
		return 1;
	if (st->in_headers && i == st->line_start && i + 12 <= st->len &&
	    is_tp_name((const char *)&s->data[i])) {
		st->found = i + 1;
		return 1;
	}
	if (s->data[i] != '\n')
		return 0;
	if (st->in_headers && i == st->line_start + 1)
		return 1; /* the empty line */
	st->in_headers = 1;
	st->line_start = i + 1;
	return 0;
}

/* A selected thread read a request start line: it now serves that request. Returns true
 * with the ids of its server span in ids when it serves only this one. */
static __always_inline bool server_ctx_start(struct capture_scratch *s, __u32 copied,
					     __u64 pid_tgid, struct ht_ctx_ids *ids)
{
	struct server_ctx *sc, fresh = {};
	bool found;
	__u64 at;

	sc = bpf_map_lookup_elem(&server_ctxs, &pid_tgid);
	if (sc && bpf_ktime_get_ns() - sc->start_ns < HT_CTX_MAX_AGE_NS) {
		sc->inflight++;
		return false; /* an event loop: no guess which request a call belongs to */
	}
	__builtin_memset(&s->scan, 0, sizeof(s->scan));
	s->scan.len = copied;
	bpf_loop(HT_MAX_CAPTURE, tp_scan_cb, NULL, 0);
	found = s->scan.found != 0;
	at = found ? s->scan.found - 1 + 12 : 0;
	if (found) {
		BOUND(at, OFF_MASK);
		/* optional whitespace, then the value */
#pragma unroll
		for (int k = 0; k < 4; k++)
			if (s->data[at] == ' ' || s->data[at] == '\t')
				at++;
		if (at + 56 > copied || !parse_traceparent((const char *)&s->data[at], &fresh.ids))
			found = false;
	}
	if (!found) {
		random_bytes(fresh.ids.trace_id, 16);
		fresh.ids.flags = 1;
	}
	__builtin_memset(fresh.ids.parent_id, 0, 8);
	random_bytes(fresh.ids.span_id, 8);
	fresh.ids.span_id[0] |= 1; /* never all zero */
	fresh.start_ns = bpf_ktime_get_ns();
	fresh.inflight = 1;
	fresh.nonblocking = (s->ev.flags & HT_DATA_NONBLOCK) != 0;
	if (bpf_map_update_elem(&server_ctxs, &pid_tgid, &fresh, BPF_ANY)) {
		stat_inc(HT_STAT_MAP_FULL);
		return false;
	}
	*ids = fresh.ids;
	return true;
}

/* The ids a request or response starting in this I/O carries (HT_DATA_CTX). */
static __always_inline void capture_ctx(struct capture_scratch *s, __u8 dir, __u32 copied)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	bool response;

	if (copied < 8)
		return;
	response = s->data[0] == 'H' && s->data[1] == 'T' && s->data[2] == 'T' && s->data[3] == 'P';
	if (dir == HT_DIR_INGRESS && !response) {
		if (server_ctx_start(s, copied, pid_tgid, &s->ev.ctx))
			s->ev.flags |= HT_DATA_CTX;
	} else if (dir == HT_DIR_EGRESS && response) {
		struct server_ctx *sc = bpf_map_lookup_elem(&server_ctxs, &pid_tgid);

		if (sc && sc->inflight > 1)
			sc->inflight--;
		else if (sc)
			bpf_map_delete_elem(&server_ctxs, &pid_tgid);
	} else if (dir == HT_DIR_EGRESS) {
		struct handoff *h = bpf_map_lookup_elem(&inject_handoff, &pid_tgid);

		if (!h)
			return;
		if (h->lport == s->ev.tuple.lport && h->rport == s->ev.tuple.rport) {
			s->ev.ctx = h->ids;
			s->ev.flags |= HT_DATA_CTX;
		}
		bpf_map_delete_elem(&inject_handoff, &pid_tgid);
	}
}
#endif

/* Second step, once the caller has filled s->ev's header: copy what the header window
 * allows (plus the tail of a truncated I/O) and emit the record. */
static __always_inline void capture_emit(struct capture_scratch *s, struct stream_state *st,
					 const struct io_source *src, __u32 len, __u8 dir,
					 bool start)
{
	__u32 cap = capture_size(st, dir, start, len);
	int copied;
	__u64 size;

	s->ev.len = len;
	/* What capture_head already copied goes out whole, even past a body peek: a small
	 * read may hold the end of one message and the headers of the next (pipelined or
	 * coalesced responses), which a 64-byte peek would cut into a gap. */
	if (cap <= s->have)
		copied = (int)(s->have < capture_bytes ? s->have : capture_bytes);
	else
		copied = copy_payload(s->data, src, cap, true);
	if (copied < 0) {
		stat_inc(HT_STAT_READ_FAULT);
		s->ev.flags |= HT_DATA_READ_FAULT;
		copied = 0;
	}
	if (ends_header_block(s->data, (__u32)copied))
		st->hdr_window[dir & 1] = 0;
	if ((__u32)copied < len) {
		s->ev.flags |= HT_DATA_TRUNCATED;
		s->ev.tail_len = copy_tail(s->ev.tail, src, len);
		if (s->ev.tail_len)
			s->ev.flags |= HT_DATA_TAIL;
	}
	s->ev.cap_len = (__u32)copied;
#ifdef HT_INJECT_CTX
	if (inject_enabled && start)
		capture_ctx(s, dir, (__u32)copied);
#endif
	size = (__u64)copied;
	BOUND(size, LEN_MASK);
	emit_event(s, sizeof(s->ev) + size);
}

#endif
