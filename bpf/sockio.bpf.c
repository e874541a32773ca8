// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Socket I/O capture. Everything comes from two tracepoints that fire inside the socket
 * layer, after the protocol's sendmsg/recvmsg, in the context of the calling task:
 * tp_btf/sock_send_length and tp_btf/sock_recv_length (sk, ret, flags). They never fire for
 * file or pipe I/O, so the rest of the host never runs this code. The syscall's fd and
 * user buffer come from the task's saved user registers (bpf_task_pt_regs), so no
 * sys_enter/sys_exit pair is needed (shared/research/kernel-facts.md, section 7).
 *
 * Per socket we keep a small state in socket local storage (freed with the socket):
 * stream positions per direction, the protocol class and the header window. Only HTTP/1.x
 * connections produce events; each event carries the head of the I/O (the whole header
 * block, bounded), a few bytes of bodies, and the I/O's position in its stream so that
 * userspace can see what was not copied.
 */
#include "common.bpf.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define MSG_PEEK 2
#define TCP_CLOSE 7

/* x86_64 syscall numbers whose arguments locate the user buffer. */
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47

struct sock_state {
	__u64 pos[2];	     /* bytes seen per direction since the state was created */
	__u32 hdr_window[2]; /* bytes still copied in full as a possible header block */
	__u32 tgid;	     /* last process that did I/O on the socket */
	__u8 proto;	     /* enum ht_proto */
	__u8 tries;	     /* I/Os seen while unclassified */
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

/* The event is assembled here (too big for the 512-byte stack). Offsets and lengths are
 * bounded with masks the verifier can see (offset <= MAX-1, length <= 2*MAX-1), so the data
 * area is three times the largest capture although at most MAX bytes are ever used. */
struct capture_scratch {
	struct ht_data_event ev;
	__u8 data[3 * HT_MAX_CAPTURE];
};

/* clang may re-materialise a value from an unbounded register after a range check; an AND
 * in inline asm pins the bound on the register the helper call actually uses. */
#define BOUND(v, mask) asm volatile("%[x] &= %[m]" : [x] "+r"(v) : [m] "i"(mask))
#define OFF_MASK (HT_MAX_CAPTURE - 1)
#define LEN_MASK (2 * HT_MAX_CAPTURE - 1)

/* One slot per CPU (the loader sizes it). A plain array indexed by CPU rather than a
 * PERCPU_ARRAY, whose values are limited to 32 KiB. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct capture_scratch);
} capture_heap SEC(".maps");

static __always_inline struct capture_scratch *scratch_get(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&capture_heap, &cpu);
}

/* Where the bytes of the current syscall live in user memory. */
struct io_source {
	const void *buf;	 /* single buffer, or NULL */
	const struct iovec *iov; /* vector, when buf is NULL */
	__u32 iovcnt;
	__s32 fd;
};

static __always_inline bool resolve_source(struct io_source *src)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	struct user_msghdr mh;
	/* read every register once, up front: if clang merges a register load with the
	 * msghdr stack load below, the verifier rejects the shared instruction */
	long nr = regs->orig_ax;
	unsigned long arg1 = regs->di, arg2 = regs->si, arg3 = regs->dx;

	barrier_var(arg2);
	src->fd = (__s32)arg1;
	src->buf = NULL;
	src->iov = NULL;
	src->iovcnt = 0;
	switch (nr) {
	case NR_read:
	case NR_write:
	case NR_sendto:
	case NR_recvfrom:
		src->buf = (const void *)arg2;
		return true;
	case NR_readv:
	case NR_writev:
		src->iov = (const struct iovec *)arg2;
		src->iovcnt = (__u32)arg3;
		return true;
	case NR_sendmsg:
	case NR_recvmsg:
		if (bpf_probe_read_user(&mh, sizeof(mh), (const void *)arg2))
			return false;
		src->iov = mh.msg_iov;
		src->iovcnt = (__u32)mh.msg_iovlen;
		return true;
	default:
		/* sendfile, splice, io_uring, *mmsg, kernel senders: no single user buffer */
		return false;
	}
}

/* Copy up to want bytes (<= HT_MAX_CAPTURE) of the I/O into dst. Returns bytes copied,
 * or -1 on a read fault. */
static __always_inline int copy_payload(__u8 *dst, const struct io_source *src, __u32 want)
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

/* A cheap test on the first bytes of an I/O: does an HTTP/1.x request or status line start
 * here? Userspace parses for real; this only decides what to copy. */
static __always_inline bool looks_like_start_line(const __u8 *p, __u32 len)
{
	__u32 w;

	if (len < 5)
		return false;
	w = load_u32(p);
	switch (w) {
	case FOURCC('G', 'E', 'T', ' '):
	case FOURCC('P', 'U', 'T', ' '):
		return true;
	case FOURCC('P', 'O', 'S', 'T'):
	case FOURCC('H', 'E', 'A', 'D'):
		return p[4] == ' ';
	case FOURCC('H', 'T', 'T', 'P'):
		return p[4] == '/';
	case FOURCC('D', 'E', 'L', 'E'): /* DELETE */
	case FOURCC('P', 'A', 'T', 'C'): /* PATCH */
	case FOURCC('O', 'P', 'T', 'I'): /* OPTIONS */
	case FOURCC('C', 'O', 'N', 'N'): /* CONNECT */
	case FOURCC('T', 'R', 'A', 'C'): /* TRACE */
		return true;
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
	return data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' &&
	       data[i + 3] == '\n';
}

static __always_inline void fill_tuple(struct sock *sk, struct ht_tuple *t)
{
	__u16 family = sk->__sk_common.skc_family;

	t->family = family;
	t->lport = sk->__sk_common.skc_num;
	t->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == AF_INET) {
		__u32 l = sk->__sk_common.skc_rcv_saddr;
		__u32 r = sk->__sk_common.skc_daddr;

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

static __always_inline bool port_selected(struct sock *sk)
{
	__u16 lport = sk->__sk_common.skc_num;
	__u16 rport = bpf_ntohs(sk->__sk_common.skc_dport);

	return bpf_map_lookup_elem(&selected_ports, &lport) ||
	       bpf_map_lookup_elem(&selected_ports, &rport);
}

static __always_inline void fill_event_header(struct ht_data_event *ev, struct sock *sk,
					      struct task_struct *task, __u64 pid_tgid, __u64 pos,
					      __u8 dir)
{
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = HT_EV_DATA;
	ev->tgid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->cookie = bpf_get_socket_cookie(sk);
	ev->pos = pos;
	ev->proc_start_ns = task->group_leader->start_time;
	ev->dir = dir;
	ev->fd = -1;
	fill_tuple(sk, &ev->tuple);
	bpf_probe_read_kernel(ev->comm, sizeof(ev->comm), task->group_leader->comm);
}

/* How many bytes of this I/O to copy, and the header window left afterwards. A start line
 * opens a window of HT_HEADER_WINDOW bytes copied in full, over as many I/Os as it takes;
 * it closes early when a copy ends with the empty line. Other I/Os are body: only a peek. */
static __always_inline __u32 capture_size(struct sock_state *st, __u8 dir, bool start,
					  __u32 len)
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

static __always_inline int emit_eof(struct sock *sk, struct task_struct *task, __u64 pid_tgid,
				    __u64 pos)
{
	struct capture_scratch *s = scratch_get();

	if (!s)
		return 0;
	fill_event_header(&s->ev, sk, task, pid_tgid, pos, HT_DIR_INGRESS);
	s->ev.flags = HT_DATA_EOF;
	emit_event(&s->ev, sizeof(s->ev));
	return 0;
}

/* Classify an unclassified socket from the first bytes of an I/O. Returns the class. */
static __always_inline __u8 classify(struct sock_state *st, bool start, const __u8 *head,
				     __u32 n)
{
	if (start) {
		st->proto = HT_PROTO_HTTP1;
	} else if (looks_like_tls(head, n) || ++st->tries > HT_CLASSIFY_TRIES) {
		st->proto = HT_PROTO_OTHER;
		stat_inc(HT_STAT_NOT_HTTP);
	}
	return st->proto;
}

static __always_inline int handle_socket_io(struct sock *sk, int ret, int flags, __u8 dir)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct capture_scratch *s;
	struct io_source src;
	struct sock_state *st;
	__u32 head_len, cap;
	__u16 family;
	__u64 pos, size;
	bool start;
	int copied;

	if (ret < 0)
		return 0;
	family = sk->__sk_common.skc_family;
	if ((family != AF_INET && family != AF_INET6) || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	task = bpf_get_current_task_btf();
	if (!task_selected(task, pid_tgid >> 32))
		return 0;
	if (filter_by_port && !port_selected(sk))
		return 0;
	if (dir == HT_DIR_INGRESS && (flags & MSG_PEEK)) {
		/* the same bytes are read again without MSG_PEEK */
		stat_inc(HT_STAT_PEEK_SKIPPED);
		return 0;
	}
	st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		stat_inc(HT_STAT_STORAGE_FULL);
		return 0;
	}
	pos = st->pos[dir & 1];
	st->pos[dir & 1] = pos + (__u32)ret;
	st->tgid = pid_tgid >> 32;
	if (st->proto == HT_PROTO_OTHER)
		return 0;
	if (ret == 0) {
		if (st->proto == HT_PROTO_HTTP1 && dir == HT_DIR_INGRESS)
			emit_eof(sk, task, pid_tgid, pos);
		return 0;
	}
	stat_inc(HT_STAT_SOCKET_IO);
	s = scratch_get();
	if (!s)
		return 0;
	if (!resolve_source(&src)) {
		if (st->proto != HT_PROTO_HTTP1)
			return 0;
		/* bytes went by without a buffer we can read: report their size and time so
		 * userspace knows the position and when a body ended */
		stat_inc(HT_STAT_NO_SYSCALL);
		fill_event_header(&s->ev, sk, task, pid_tgid, pos, dir);
		s->ev.len = (__u32)ret;
		s->ev.flags = HT_DATA_TRUNCATED;
		emit_event(&s->ev, sizeof(s->ev));
		return 0;
	}

	head_len = (__u32)ret < 8 ? (__u32)ret : 8;
	copied = copy_payload(s->data, &src, head_len);
	if (copied < 0) {
		stat_inc(HT_STAT_READ_FAULT);
		return 0;
	}
	start = looks_like_start_line(s->data, (__u32)copied);
	if (st->proto == HT_PROTO_UNKNOWN &&
	    classify(st, start, s->data, (__u32)copied) != HT_PROTO_HTTP1)
		return 0;

	cap = capture_size(st, dir, start, (__u32)ret);
	fill_event_header(&s->ev, sk, task, pid_tgid, pos, dir);
	s->ev.fd = src.fd;
	s->ev.len = (__u32)ret;
	copied = copy_payload(s->data, &src, cap);
	if (copied < 0) {
		stat_inc(HT_STAT_READ_FAULT);
		s->ev.flags |= HT_DATA_READ_FAULT;
		copied = 0;
	}
	if (ends_header_block(s->data, (__u32)copied))
		st->hdr_window[dir & 1] = 0;
	if ((__u32)copied < (__u32)ret) {
		s->ev.flags |= HT_DATA_TRUNCATED;
		s->ev.tail_len = copy_tail(s->ev.tail, &src, (__u32)ret);
		if (s->ev.tail_len)
			s->ev.flags |= HT_DATA_TAIL;
	}
	s->ev.cap_len = (__u32)copied;
	size = (__u64)copied;
	BOUND(size, LEN_MASK);
	emit_event(s, sizeof(s->ev) + size);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ht_sock_send, struct sock *sk, int ret, int flags)
{
	return handle_socket_io(sk, ret, flags, HT_DIR_EGRESS);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(ht_sock_recv, struct sock *sk, int ret, int flags)
{
	return handle_socket_io(sk, ret, flags, HT_DIR_INGRESS);
}

/* A socket we followed reached TCP_CLOSE (closed, reset or timed out): tell userspace so
 * requests still waiting for an answer end now, with an error. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ht_sock_state, const struct sock *sk, int oldstate, int newstate)
{
	struct ht_close_event ev = {};
	struct sock_state *st;

	if (newstate != TCP_CLOSE)
		return 0;
	st = bpf_sk_storage_get(&sock_states, (struct sock *)sk, 0, 0);
	if (!st || st->proto != HT_PROTO_HTTP1)
		return 0;
	ev.kind = HT_EV_CLOSE;
	ev.tgid = st->tgid;
	ev.ts_ns = bpf_ktime_get_ns();
	ev.cookie = bpf_get_socket_cookie((struct sock *)sk);
	ev.rd_pos = st->pos[HT_DIR_INGRESS];
	ev.wr_pos = st->pos[HT_DIR_EGRESS];
	ev.old_state = oldstate;
	ev.new_state = newstate;
	emit_event(&ev, sizeof(ev));
	return 0;
}
