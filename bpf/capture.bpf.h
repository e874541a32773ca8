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

/* Per-stream capture state: one per socket (sock_states) or per TLS session (tls_states).
 * Arrays are per direction. */
struct stream_state {
	__u64 pos[2];	     /* bytes seen per direction since the state was created */
	__u64 prefix[2];     /* bytes that may begin a start line (first byte lowest) */
	__u32 hdr_window[2]; /* bytes still copied in full as a possible header block */
	__u32 prefix_end[2]; /* low 32 bits of the stream position just past prefix */
	__u32 hdr_last4[2];  /* the last 4 bytes copied in the header window (oldest lowest) */
	__u8 prefix_len[2];  /* bytes in prefix (< HT_START_PROBE), 0: none */
	__u8 proto;	     /* enum ht_proto */
	__u8 tries;	     /* I/Os seen while unclassified */
	__u8 tls_like;	     /* classified HT_PROTO_OTHER because it carried TLS records */
	__u8 _pad[3];
};

/* --repair=inject: where the incoming traceparent header is in a captured header block. */
struct tp_scan {
	__u32 len;
	__u32 line_start;
	__u32 found; /* offset of the header + 1, 0: none */
	__u32 in_headers;
};

/* The walk over the segments of a vectored I/O done by ht_iov_walk_batch(), kept in the
 * scratch between its calls (a global function takes no pointers on 5.10). */
struct iov_walk {
	__u64 iov;	 /* user address of the iovec array */
	__u64 seg_start; /* offset in the I/O of segment next */
	__u32 iovcnt;
	__u32 next;    /* next segment to look at */
	__u32 base;    /* where in data the copy starts (< HT_START_PROBE: replayed bytes first) */
	__u32 off;     /* bytes copied */
	__u32 want;    /* bytes to copy (<= HT_MAX_CAPTURE) */
	__u32 tail_of; /* the I/O's length while its last HT_TAIL_BYTES are wanted, else 0 */
	__u8 copying;  /* still copying (else only looking for the tail) */
	__u8 stop_at_headers;
	__u8 _pad[6];
};

/* The event is assembled here (too big for the 512-byte stack). Offsets and lengths are
 * bounded with masks the verifier can see (offset <= MAX-1, length <= 2*MAX-1, after at most
 * HT_START_PROBE-1 replayed bytes), so the data area is three times the largest capture
 * although at most MAX+7 bytes are ever used. */
struct capture_scratch {
	struct ht_data_event ev;
	__u8 data[3 * HT_MAX_CAPTURE + HT_START_PROBE];
	/* what capture_head found, for capture_emit */
	__u32 have;	    /* bytes of the I/O already in data */
	__u32 replay;	    /* bytes of earlier I/Os that begin the start line found here */
	__u64 replay_bytes; /* those bytes, first lowest */
	struct iov_walk walk;
	/* The bpf_loop scan's state lives here, not on the stack: before 6.7 the verifier did
	 * not see a callback's writes to its caller's stack and pruned the code after the loop
	 * as dead (measured on Debian's 6.1). A map value is unknown to it. */
	struct tp_scan scan;
};

/* A single-buffer I/O of an HTTP stream up to this size is copied whole by capture_head:
 * one copy instead of a head then the rest. Requests and small responses are that size. */
#define HT_SMALL_IO 1024
/* Segments looked at per call of ht_iov_walk_batch(). */
#define HT_IOV_BATCH 16

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

static __always_inline bool ends_header_block(const __u8 *data, __u32 len)
{
	__u64 i;

	if (len < 4)
		return false;
	i = len - 4;
	BOUND(i, LEN_MASK);
	return data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n';
}

/* One segment of the walk: copy what is still wanted of it. -1 on a read fault. */
static __always_inline int iov_copy_segment(struct capture_scratch *s, struct iov_walk *w,
					    const struct iovec *v)
{
	__u32 want = w->want < HT_MAX_CAPTURE ? w->want : HT_MAX_CAPTURE;
	__u64 off = w->off < want ? w->off : want;
	__u64 n = v->iov_len > want - off ? want - off : v->iov_len;
	__u64 base = w->base;

	/* off < want <= MAX while copying */
	BOUND(base, HT_START_PROBE - 1);
	BOUND(off, OFF_MASK);
	BOUND(n, LEN_MASK);
	if (n && bpf_probe_read_user(s->data + base + off, n, v->iov_base))
		return -1;
	off += n;
	w->off = (__u32)off;
	if (off >= want || (w->stop_at_headers && n && ends_header_block(s->data + base, off)))
		w->copying = 0;
	return 0;
}

/* The segment holding the I/O's last byte: copy its last HT_TAIL_BYTES into ev.tail when they
 * sit in it (a tail across two segments is rare, and skipped). */
static __always_inline void iov_copy_tail(struct capture_scratch *s, const struct iov_walk *w,
					  const struct iovec *v)
{
	__u64 in_seg = w->tail_of - w->seg_start;

	if (in_seg < HT_TAIL_BYTES || in_seg > v->iov_len)
		return;
	if (!bpf_probe_read_user(s->ev.tail, HT_TAIL_BYTES, v->iov_base + in_seg - HT_TAIL_BYTES))
		s->ev.tail_len = HT_TAIL_BYTES;
}

/*
 * The next HT_IOV_BATCH segments of the walk in this CPU's scratch: their bytes are copied
 * into data while wanted, and the I/O's last bytes into ev.tail when its last segment comes.
 * Returns 0 when segments are left, 1 when the walk is over, -1 on a read fault of the copy.
 *
 * A global function, so the verifier checks it once, on its own: inlined, the branches of
 * 1024 segments are more than it follows at once ("the sequence of 8193 jumps is too
 * complex"). Weak: each object that includes this file defines it; the linker keeps one.
 */
__attribute__((weak)) __noinline int ht_iov_walk_batch(void)
{
	struct capture_scratch *s = scratch_get();
	struct iov_walk *w;

	if (!s)
		return -1;
	w = &s->walk;
	for (int k = 0; k < HT_IOV_BATCH; k++) {
		struct iovec v;
		__u32 i = w->next;

		if (i >= w->iovcnt || i >= HT_MAX_IOVECS || (!w->copying && !w->tail_of))
			return 1;
		if (bpf_probe_read_user(&v, sizeof(v),
					(const void *)(w->iov + (__u64)i * sizeof(v))))
			return w->copying ? -1 : 1;
		w->next = i + 1;
		if (w->copying && iov_copy_segment(s, w, &v) < 0)
			return -1;
		if (w->tail_of && w->seg_start + v.iov_len >= w->tail_of) {
			iov_copy_tail(s, w, &v);
			w->tail_of = 0;
		}
		w->seg_start += v.iov_len;
	}
	return 0;
}

/* The last HT_TAIL_BYTES of a single-buffer I/O of len bytes, into ev.tail. */
static __always_inline void copy_buffer_tail(struct capture_scratch *s, const void *buf, __u32 len)
{
	if (len >= HT_TAIL_BYTES &&
	    !bpf_probe_read_user(s->ev.tail, HT_TAIL_BYTES, buf + len - HT_TAIL_BYTES))
		s->ev.tail_len = HT_TAIL_BYTES;
}

/*
 * Copy up to want bytes (<= HT_MAX_CAPTURE) of the I/O into s->data at base (<
 * HT_START_PROBE). Returns bytes copied, or -1 on a read fault. stop_at_headers: for a
 * vectored I/O, stop after the segment that ends the header block (servers like nginx write
 * the headers in their own iovec): the body that follows is not needed, only its size.
 * tail_of: the I/O's length when its last HT_TAIL_BYTES are wanted in ev.tail should the
 * copy not reach them, else 0.
 */
static __always_inline int copy_payload(struct capture_scratch *s, __u32 base,
					const struct io_source *src, __u32 want,
					bool stop_at_headers, __u32 tail_of)
{
	struct iov_walk *w = &s->walk;
	int ret = 0;

	if (want > HT_MAX_CAPTURE)
		want = HT_MAX_CAPTURE;
	if (src->buf) {
		__u64 n = want, b = base;

		BOUND(b, HT_START_PROBE - 1);
		BOUND(n, LEN_MASK);
		if (bpf_probe_read_user(s->data + b, n, src->buf))
			return -1;
		if (want < tail_of)
			copy_buffer_tail(s, src->buf, tail_of);
		return (int)want;
	}
	__builtin_memset(w, 0, sizeof(*w));
	w->iov = (__u64)src->iov;
	w->iovcnt = src->iovcnt;
	w->base = base;
	w->want = want;
	w->tail_of = tail_of;
	w->copying = want > 0;
	w->stop_at_headers = stop_at_headers;
	for (int c = 0; c < HT_MAX_IOVECS / HT_IOV_BATCH; c++) {
		ret = ht_iov_walk_batch();
		if (ret)
			break;
	}
	if (ret < 0)
		return -1;
	return (int)w->off;
}

static __always_inline __u32 load_u32(const __u8 *p)
{
	return (__u32)p[0] | (__u32)p[1] << 8 | (__u32)p[2] << 16 | (__u32)p[3] << 24;
}

#define FOURCC(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

/* The request-target after "METHOD ": origin-form '/', '*', or an absolute-form whose
 * scheme is http(s) or ftp in any case (a proxy's client sends those; schemes are
 * case-insensitive). Other letters stay out: a Redis inline "GET key" is not HTTP. */
static __always_inline bool target_start(__u8 c)
{
	__u8 lower = c | 0x20;

	return c == '/' || c == '*' || lower == 'h' || lower == 'f';
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

/* The first n (<= HT_START_PROBE) bytes at p as a word, first byte lowest, the rest zero.
 * p has HT_START_PROBE readable bytes. */
static __always_inline __u64 load_head(const __u8 *p, __u32 n)
{
	__u64 w;

	__builtin_memcpy(&w, p, sizeof(w));
	return n < HT_START_PROBE ? w & ((1ULL << (8 * n)) - 1) : w;
}

#define WORD8(a, b, c, d, e, f, g, h) ((__u64)FOURCC(a, b, c, d) | (__u64)FOURCC(e, f, g, h) << 32)

/* Do the first n (< HT_START_PROBE) bytes of w match the first bytes of a token of len
 * bytes (what follows the token is not compared)? */
static __always_inline bool begins_as(__u64 w, __u32 n, __u64 token, __u32 len)
{
	__u32 m = n < len ? n : len;

	return ((w ^ token) & ((1ULL << (8 * m)) - 1)) == 0;
}

/* Do the first n (< HT_START_PROBE) bytes of w begin what looks_like_start_line() accepts:
 * a method it knows and its space, or "HTTP/1"? */
static __always_inline bool may_begin_start_line(__u64 w, __u32 n)
{
	if (n == 0 || n >= HT_START_PROBE)
		return false;
	return begins_as(w, n, WORD8('G', 'E', 'T', ' ', 0, 0, 0, 0), 4) ||
	       begins_as(w, n, WORD8('P', 'U', 'T', ' ', 0, 0, 0, 0), 4) ||
	       begins_as(w, n, WORD8('P', 'O', 'S', 'T', ' ', 0, 0, 0), 5) ||
	       begins_as(w, n, WORD8('P', 'A', 'T', 'C', 'H', ' ', 0, 0), 6) ||
	       begins_as(w, n, WORD8('H', 'E', 'A', 'D', ' ', 0, 0, 0), 5) ||
	       begins_as(w, n, WORD8('H', 'T', 'T', 'P', '/', '1', 0, 0), 6) ||
	       begins_as(w, n, WORD8('D', 'E', 'L', 'E', 'T', 'E', ' ', 0), 7) ||
	       begins_as(w, n, WORD8('T', 'R', 'A', 'C', 'E', ' ', 0, 0), 6) ||
	       begins_as(w, n, WORD8('O', 'P', 'T', 'I', 'O', 'N', 'S', 0), 7) ||
	       begins_as(w, n, WORD8('C', 'O', 'N', 'N', 'E', 'C', 'T', 0), 7);
}

/*
 * An I/O too short to tell a start line (Go's net/http reads one byte ahead of the next
 * request, "G", then "ET / HTTP/1.1..."; a client may write a request byte by byte) is kept
 * as st->prefix when it may begin one, and classified together with the I/Os after it, as
 * long as they follow it in the stream. The head of this I/O, at stream position pos, is in
 * s->data (s->have bytes). Returns the length of the kept prefix when it and this I/O begin
 * a start line together (the prefix is then in s->replay_bytes), else 0; keeps what this
 * I/O adds to a prefix for the next one.
 */
static __always_inline __u32 join_prefix(struct capture_scratch *s, struct stream_state *st,
					 __u8 dir, __u64 pos, __u32 len)
{
	__u8 d = dir & 1;
	__u32 k = st->prefix_len[d];
	__u32 n = s->have < HT_START_PROBE ? s->have : HT_START_PROBE;
	__u64 head = load_head(s->data, n), joined = 0;
	__u8 probe[HT_START_PROBE];

	st->prefix_len[d] = 0;
	if (k >= HT_START_PROBE || st->prefix_end[d] != (__u32)pos)
		k = 0;
	if (k) {
		joined = st->prefix[d] | head << (8 * k);
		__builtin_memcpy(probe, &joined, sizeof(probe));
		if (looks_like_start_line(probe, k + n < HT_START_PROBE ? k + n : HT_START_PROBE)) {
			s->replay_bytes = st->prefix[d];
			return k;
		}
	}
	/* keep the prefix grown by this I/O, else this I/O alone, while too short to tell */
	if (n != len)
		return 0;
	if (k && may_begin_start_line(joined, k + len)) {
		st->prefix[d] = joined;
		st->prefix_len[d] = k + len;
	} else if (may_begin_start_line(head, len)) {
		st->prefix[d] = head;
		st->prefix_len[d] = len;
	} else {
		return 0;
	}
	st->prefix_end[d] = (__u32)(pos + len);
	return 0;
}

/*
 * First step of a capture: copy the head of the I/O (len > 0 bytes at stream position pos)
 * into s->data and classify an unclassified stream. Returns 1 when a start line begins here
 * (or began in the I/Os just before: s->replay), 0 for other bytes of an HTTP stream, -1
 * when there is nothing to emit (not HTTP, or a read fault).
 */
static __always_inline int capture_head(struct capture_scratch *s, struct stream_state *st,
					const struct io_source *src, __u32 len, __u8 dir, __u64 pos)
{
	__u32 head_len = len < HT_START_PROBE ? len : HT_START_PROBE;
	int copied;
	bool start;

	s->replay = 0;
	if (st->proto == HT_PROTO_HTTP1 && src->buf && len <= HT_SMALL_IO)
		head_len = len;
	copied = copy_payload(s, 0, src, head_len, false, 0);
	if (copied < 0) {
		st->prefix_len[dir & 1] = 0;
		stat_inc(HT_STAT_READ_FAULT);
		return -1;
	}
	s->have = (__u32)copied;
	start = looks_like_start_line(s->data, (__u32)copied);
	if (start)
		st->prefix_len[dir & 1] = 0;
	else
		s->replay = join_prefix(s, st, dir, pos, len);
	start = start || s->replay;
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

/* A selected thread read a request start line on connection conn: it now serves that
 * request. Returns true with the ids of its server span in ids when it serves only this one. */
static __always_inline bool server_ctx_start(struct capture_scratch *s, __u32 copied,
					     __u64 pid_tgid, __u64 conn, struct ht_ctx_ids *ids)
{
	struct server_ctx *sc, fresh = {};
	struct server_conn owner = {};
	bool found;
	__u64 at;

	sc = bpf_map_lookup_elem(&server_ctxs, &pid_tgid);
	/* by age only: an answered context may still count the thread's other requests */
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
	sampler_mark(&fresh.ids, found);
	__builtin_memset(fresh.ids.parent_id, 0, 8);
	random_bytes(fresh.ids.span_id, 8);
	fresh.ids.span_id[0] |= 1; /* never all zero */
	fresh.start_ns = bpf_ktime_get_ns();
	fresh.inflight = 1;
	fresh.nonblocking = (s->ev.flags & HT_DATA_NONBLOCK) != 0;
	fresh.conn = conn;
	/* the connection first: without it no other thread could end the context */
	owner.pid_tgid = pid_tgid;
	owner.start_ns = fresh.start_ns;
	if (bpf_map_update_elem(&server_conns, &conn, &owner, BPF_ANY) ||
	    bpf_map_update_elem(&server_ctxs, &pid_tgid, &fresh, BPF_ANY)) {
		bpf_map_delete_elem(&server_ctxs, &pid_tgid); /* no stale one stays either */
		stat_inc(HT_STAT_MAP_FULL);
		return false;
	}
	*ids = fresh.ids;
	return true;
}

/* The request read on connection conn is answered (a response starts on it, whatever the
 * thread) or can no longer be (it closed): the context it set is never used again. Returns
 * true when there was such a context. */
static __always_inline bool server_conn_done(__u64 conn)
{
	struct server_conn *owner = bpf_map_lookup_elem(&server_conns, &conn);
	struct server_ctx *sc;
	__u64 pid_tgid;

	if (!owner)
		return false;
	pid_tgid = owner->pid_tgid;
	sc = bpf_map_lookup_elem(&server_ctxs, &pid_tgid);
	if (sc && sc->start_ns == owner->start_ns && sc->conn == conn) {
		if (sc->inflight > 1) {
			sc->inflight--;
			sc->answered = 1; /* the thread still holds others: unusable anyway */
		} else {
			bpf_map_delete_elem(&server_ctxs, &pid_tgid);
		}
	}
	bpf_map_delete_elem(&server_conns, &conn);
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
		if (server_ctx_start(s, copied, pid_tgid, s->ev.cookie, &s->ev.ctx))
			s->ev.flags |= HT_DATA_CTX;
	} else if (dir == HT_DIR_EGRESS && response) {
		struct server_ctx *sc;

		if (server_conn_done(s->ev.cookie))
			return;
		/* a request of this thread that set no context (it held another) */
		sc = bpf_map_lookup_elem(&server_ctxs, &pid_tgid);
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

/* The last four bytes of a header window after n more bytes at data, given the four before
 * them (oldest lowest). */
static __always_inline __u32 window_last4(__u32 before, const __u8 *data, __u32 n)
{
	__u64 i;

	if (n >= 4) {
		i = n - 4;
		BOUND(i, LEN_MASK);
		return load_u32(data + i);
	}
	if (n == 0)
		return before;
	return before >> (8 * n) | (__u32)load_head(data, n) << (8 * (4 - n));
}

/*
 * Second step, once the caller has filled s->ev's header: copy what the header window
 * allows (plus the tail of a truncated I/O) and emit the record. A start line that began in
 * earlier I/Os is replayed whole at the head of the payload (a connection seen for the first
 * time is created from it).
 */
static __always_inline void capture_emit(struct capture_scratch *s, struct stream_state *st,
					 const struct io_source *src, __u32 len, __u8 dir,
					 bool start)
{
	__u32 cap = capture_size(st, dir, start, len);
	__u32 k = s->replay < HT_START_PROBE ? s->replay : 0;
	__u32 last4;
	int copied;
	__u64 size;

	if (k) {
		__builtin_memcpy(s->data, &s->replay_bytes, sizeof(s->replay_bytes));
		copied = copy_payload(s, k, src, cap, true, len);
	} else if (cap <= s->have) {
		/* What capture_head already copied goes out whole, even past a body peek: a
		 * small read may hold the end of one message and the headers of the next
		 * (pipelined or coalesced responses), which a 64-byte peek would cut into a
		 * gap. */
		copied = (int)(s->have < capture_bytes ? s->have : capture_bytes);
		if ((__u32)copied < len && src->buf)
			copy_buffer_tail(s, src->buf, len);
	} else {
		copied = copy_payload(s, 0, src, cap, true, len);
	}
	if (copied < 0) {
		stat_inc(HT_STAT_READ_FAULT);
		s->ev.flags |= HT_DATA_READ_FAULT;
		copied = 0;
	}
	/* the empty line may be split between this copy and the ones before (a client that
	 * writes each header line on its own, then "\r\n") */
	last4 = window_last4(start ? 0 : st->hdr_last4[dir & 1], s->data, k + (__u32)copied);
	if (last4 == FOURCC('\r', '\n', '\r', '\n'))
		st->hdr_window[dir & 1] = 0;
	st->hdr_last4[dir & 1] = (__u32)copied < len ? 0 : last4;
	if ((__u32)copied < len) {
		s->ev.flags |= HT_DATA_TRUNCATED;
		if (s->ev.tail_len)
			s->ev.flags |= HT_DATA_TAIL;
	} else {
		s->ev.tail_len = 0;
	}
	s->ev.pos -= k;
	s->ev.len = len + k;
	s->ev.replay_len = (__u8)k;
	s->ev.cap_len = k + (__u32)copied;
#ifdef HT_INJECT_CTX
	if (inject_enabled && start)
		capture_ctx(s, dir, k + (__u32)copied);
#endif
	size = (__u64)k + (__u64)copied;
	BOUND(size, LEN_MASK);
	emit_event(s, sizeof(s->ev) + size);
}

#endif
