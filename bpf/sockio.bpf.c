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
 *
 * Sockets carrying TLS are classified HT_PROTO_OTHER (their ciphertext is never copied) and
 * matched here to the TLS session whose plaintext tls.bpf.c captures (tls.bpf.h); their
 * close still ends that connection in userspace.
 */
#include "capture.bpf.h"
#include "tls.bpf.h"

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
	struct stream_state stream; /* positions, protocol class, header window */
	__u32 tgid;		    /* last process that did I/O on the socket */
	__u8 tls;		    /* carries a TLS session: plaintext comes from tls.bpf.c */
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

/* Where the bytes of the current syscall live in user memory. */
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

static __always_inline bool port_selected(struct sock *sk)
{
	return ports_selected(sk->__sk_common.skc_num, bpf_ntohs(sk->__sk_common.skc_dport));
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

struct agent_addr {
	__u64 hi, lo; /* an ht_tuple address, as two words for a cheap compare */
};

/* Local ports of the agent's own connections (OTLP export), with their local address. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, __u16);
	__type(value, struct agent_addr);
} agent_ports SEC(".maps");

/* The agent's own traffic is never traced, and neither is the other end of it when that end
 * is on this host (a collector on localhost): tracing the collector's receiving side would
 * export a span per export, forever. */
static __always_inline void remember_agent_port(struct sock *sk)
{
	struct ht_tuple t = {};
	__u16 lport;

	fill_tuple(sk, &t);
	lport = t.lport;
	bpf_map_update_elem(&agent_ports, &lport, t.laddr, BPF_ANY);
}

static __always_inline bool peer_is_agent(struct sock *sk)
{
	struct ht_tuple t = {};
	struct agent_addr *addr, peer;
	__u16 rport;

	fill_tuple(sk, &t);
	rport = t.rport;
	addr = bpf_map_lookup_elem(&agent_ports, &rport);
	if (!addr)
		return false;
	__builtin_memcpy(&peer, t.raddr, sizeof(peer));
	return addr->hi == peer.hi && addr->lo == peer.lo;
}

static __always_inline int handle_socket_io(struct sock *sk, int ret, int flags, __u8 dir)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct capture_scratch *s;
	struct io_source src;
	struct sock_state *st;
	__u16 family;
	__u64 pos;
	int head;

	if (ret < 0)
		return 0;
	family = sk->__sk_common.skc_family;
	if ((family != AF_INET && family != AF_INET6) || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	task = bpf_get_current_task_btf();
	if ((pid_tgid >> 32) == self_tgid) {
		if (dir == HT_DIR_EGRESS)
			remember_agent_port(sk);
		return 0;
	}
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
	pos = st->stream.pos[dir & 1];
	st->stream.pos[dir & 1] = pos + (__u32)ret;
	st->tgid = pid_tgid >> 32;
	/* ciphertext of a TLS session: its plaintext is captured from the TLS library */
	if (tls_enabled && !st->tls &&
	    (st->stream.proto == HT_PROTO_UNKNOWN || st->stream.tls_like) &&
	    tls_match_nested(sk, pid_tgid)) {
		st->tls = 1;
		st->stream.proto = HT_PROTO_OTHER;
	}
	if (st->stream.proto == HT_PROTO_UNKNOWN && peer_is_agent(sk))
		st->stream.proto = HT_PROTO_OTHER;
	if (st->stream.proto == HT_PROTO_OTHER)
		return 0;
	if (ret == 0) {
		if (st->stream.proto == HT_PROTO_HTTP1 && dir == HT_DIR_INGRESS)
			emit_eof(sk, task, pid_tgid, pos);
		return 0;
	}
	stat_inc(HT_STAT_SOCKET_IO);
	s = scratch_get();
	if (!s)
		return 0;
	if (!resolve_source(&src)) {
		if (st->stream.proto != HT_PROTO_HTTP1)
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

	head = capture_head(s, &st->stream, &src, (__u32)ret);
	if (head < 0) {
		/* a handshake record on an fd the process gave to SSL_set_fd */
		if (tls_enabled && st->stream.tls_like && tls_match_fd(sk, pid_tgid >> 32, src.fd))
			st->tls = 1;
		return 0;
	}
	fill_event_header(&s->ev, sk, task, pid_tgid, pos, dir);
	s->ev.fd = src.fd;
	capture_emit(s, &st->stream, &src, (__u32)ret, dir, head);
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

/* A socket we followed (HTTP, or carrying a TLS session) reached TCP_CLOSE (closed, reset or
 * timed out): tell userspace so requests still waiting for an answer end now, with an
 * error. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ht_sock_state, const struct sock *sk, int oldstate, int newstate)
{
	struct ht_close_event ev = {};
	struct sock_state *st;

	if (newstate != TCP_CLOSE)
		return 0;
	st = bpf_sk_storage_get(&sock_states, (struct sock *)sk, 0, 0);
	if (!st || (st->stream.proto != HT_PROTO_HTTP1 && !st->tls))
		return 0;
	ev.kind = HT_EV_CLOSE;
	ev.tgid = st->tgid;
	ev.ts_ns = bpf_ktime_get_ns();
	ev.cookie = bpf_get_socket_cookie((struct sock *)sk);
	ev.rd_pos = st->stream.pos[HT_DIR_INGRESS];
	ev.wr_pos = st->stream.pos[HT_DIR_EGRESS];
	ev.old_state = oldstate;
	ev.new_state = newstate;
	emit_event(&ev, sizeof(ev));
	return 0;
}
