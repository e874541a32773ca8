/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Socket I/O capture, whatever the hook. Three capture backends feed this one path; the
 * agent picks one at start-up by probing the kernel (agent/kernel.c, agent/loader.c):
 *
 *   tp_btf    tp_btf/sock_send_length, sock_recv_length (6.3+)        sockio.bpf.c
 *   fexit     fexit on inet_sendmsg, inet6_sendmsg, inet_recvmsg,      sockio.bpf.c
 *             inet6_recvmsg and inet_sendpage (where it exists)
 *   syscalls  tracepoints sys_enter_* / sys_exit_* of the read/write,  syscalls.bpf.c
 *             send/recv, sendfile and splice families
 *
 * The first two hold BTF socket pointers ("trusted"): the per-socket state lives in socket
 * local storage and the socket cookie is the connection identity. Tracepoint programs hold
 * plain addresses: the state lives in a hash keyed by the socket's address, removed when the
 * socket closes, and the connection identity is an id drawn when that state is created.
 *
 * Per socket we keep stream positions per direction, the protocol class and the header
 * window. Only HTTP/1.x connections produce events; each event carries the head of the I/O
 * (the whole header block, bounded), a few bytes of bodies, and the I/O's position in its
 * stream so that userspace can see what was not copied. Sockets carrying TLS are classified
 * HT_PROTO_OTHER (their ciphertext is never copied) and matched to the TLS session whose
 * plaintext tls.bpf.c captures (tls.bpf.h); their close still ends that connection.
 */
#ifndef HOPTRACE_SOCK_BPF_H
#define HOPTRACE_SOCK_BPF_H

#include "capture.bpf.h"
#include "tls.bpf.h"

#define MSG_PEEK 2
#define TCP_CLOSE 7
#define EEXIST 17

/* Sockets followed at once by the hash-backed state (syscall backend). */
#define HT_MAX_SOCKETS 65536

struct sock_state {
	struct stream_state stream; /* positions, protocol class, header window */
	__u64 id;		    /* hash-backed state: the connection identity */
	__u32 ports;		    /* hash-backed state: skc_portpair when created */
	__u32 tgid;		    /* last process that did I/O on the socket */
	__u8 tls;		    /* carries a TLS session: plaintext comes from tls.bpf.c */
	__u8 _pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps") __shared;

/* Created only for the syscall backend. LRU: a state whose socket never reported TCP_CLOSE
 * to us must not stay for ever (least recently used first: idle sockets). Preallocated
 * (88-byte values, 10 MiB of memlock): before 6.1 a tracepoint program using a hash
 * allocated at run time makes the kernel WARN, and a PREEMPT_RT kernel refuses the
 * program. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HT_MAX_SOCKETS);
	__type(key, __u64); /* the struct sock's address */
	__type(value, struct sock_state);
} sock_states_by_addr SEC(".maps") __shared;

/* Never all zero, never a kernel cookie (those count up from 1), never synthetic. */
static __always_inline __u64 draw_sock_id(void)
{
	__u64 id = (__u64)bpf_get_prandom_u32() << 32 | bpf_get_prandom_u32();

	return (id & ~(HT_COOKIE_SYNTHETIC | HT_COOKIE_DRAWN)) | HT_COOKIE_DRAWN;
}

/* A socket's state in the hash by address. Socket memory is reused: a state is valid only
 * for the ports it was created with (a new socket at the same address starts over), and
 * none is created for a closed socket (it would outlive the socket). */
static __always_inline struct sock_state *sock_state_by_addr(struct sock *sk, bool create)
{
	__u64 key = (__u64)sk;
	struct sock_state *st = bpf_map_lookup_elem(&sock_states_by_addr, &key);
	__u32 ports = BPF_CORE_READ(sk, __sk_common.skc_portpair);
	struct sock_state fresh = {};

	if (st && st->ports == ports)
		return st;
	if (!create || BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE)
		return NULL;
	fresh.id = draw_sock_id();
	fresh.ports = ports;
	if (bpf_map_update_elem(&sock_states_by_addr, &key, &fresh, BPF_ANY))
		return NULL;
	return bpf_map_lookup_elem(&sock_states_by_addr, &key);
}

/* The state of a socket, created on first use when create. NULL: none (or no room). */
static __always_inline struct sock_state *sock_state_get(struct sock *sk, bool trusted, bool create)
{
	if (trusted)
		return bpf_sk_storage_get(&sock_states, sk, 0,
					  create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	return sock_state_by_addr(sk, create);
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
} agent_ports SEC(".maps") __shared;

/* The agent's own traffic is never traced, and neither is the other end of it when that end
 * is on this host (a collector on localhost): tracing the collector's receiving side would
 * export a span per export, forever. */
static __always_inline void remember_agent_port(struct sock *sk, bool trusted)
{
	struct ht_tuple t = {};
	__u16 lport;

	fill_tuple(sk, &t, trusted);
	lport = t.lport;
	bpf_map_update_elem(&agent_ports, &lport, t.laddr, BPF_ANY);
}

static __always_inline bool peer_is_agent(struct sock *sk, bool trusted)
{
	struct ht_tuple t = {};
	struct agent_addr *addr, peer;
	__u16 rport;

	fill_tuple(sk, &t, trusted);
	rport = t.rport;
	addr = bpf_map_lookup_elem(&agent_ports, &rport);
	if (!addr)
		return false;
	__builtin_memcpy(&peer, t.raddr, sizeof(peer));
	return addr->hi == peer.hi && addr->lo == peer.lo;
}

static __always_inline bool sock_is_tcp_inet(struct sock *sk, bool trusted)
{
	__u16 family = SK_READ(trusted, sk, __sk_common.skc_family);

	return (family == AF_INET || family == AF_INET6) &&
	       SK_READ(trusted, sk, sk_protocol) == IPPROTO_TCP;
}

static __always_inline bool sock_port_selected(struct sock *sk, bool trusted)
{
	return ports_selected(SK_READ(trusted, sk, __sk_common.skc_num),
			      bpf_ntohs(SK_READ(trusted, sk, __sk_common.skc_dport)));
}

static __always_inline void fill_event_header(struct ht_data_event *ev, struct sock *sk,
					      bool trusted, const struct sock_state *st,
					      __u64 pid_tgid, __u64 pos, __u8 dir, __u64 ts_ns)
{
	struct task_struct *task;

	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = HT_EV_DATA;
	ev->tgid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->ts_ns = ts_ns ? ts_ns : bpf_ktime_get_ns();
	ev->cookie = sock_id(sk, trusted, st->id);
	ev->pos = pos;
	ev->dir = dir;
	ev->fd = -1;
	fill_tuple(sk, &ev->tuple, trusted);
	if (trusted) {
		task = bpf_get_current_task_btf();
		ev->proc_start_ns = task->group_leader->start_time;
		bpf_probe_read_kernel(ev->comm, sizeof(ev->comm), task->group_leader->comm);
	} else {
		task = current_task();
		ev->proc_start_ns = current_proc_start(task);
		current_proc_comm(task, ev->comm);
	}
}

/* x86_64 syscall numbers whose arguments locate the user buffer. */
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile 40
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_splice 275
#define NR_recvmmsg 299
#define NR_sendmmsg 307

/* Where the bytes of the current syscall live in user memory, from the task's saved user
 * registers (bpf_task_pt_regs, 5.15+): for hooks inside the socket layer (tp_btf, fexit)
 * that do not see the syscall's arguments. */
static __always_inline bool resolve_from_regs(struct io_source *src)
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

/*
 * One socket I/O of ret bytes (>= 0) in direction dir, by the current task, which the caller
 * has already selected (task, TCP, self). known_src: where its bytes are (buf and iov NULL:
 * nowhere the program can read), or NULL to find them in the user registers only when
 * needed. flags: the recv flags (MSG_PEEK). ts_ns: the time the I/O is stamped with, 0 for
 * now.
 */
static __always_inline int socket_io(struct sock *sk, bool trusted, int ret, int flags, __u8 dir,
				     const struct io_source *known_src, __u64 ts_ns)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct capture_scratch *s;
	struct io_source src;
	struct sock_state *st;
	__u64 pos;
	int head;

	if (filter_by_port && !sock_port_selected(sk, trusted))
		return 0;
	if (dir == HT_DIR_INGRESS && (flags & MSG_PEEK)) {
		/* the same bytes are read again without MSG_PEEK */
		stat_inc(HT_STAT_PEEK_SKIPPED);
		return 0;
	}
	/* an end of file with no state: nothing was followed on that socket */
	st = sock_state_get(sk, trusted, ret > 0);
	if (!st) {
		/* A socket closed by now (a reset handled while the syscall ran: its state and
		 * its close event are gone already) is no loss; anything else is. */
		if (ret > 0 && SK_READ(trusted, sk, __sk_common.skc_state) != TCP_CLOSE)
			stat_inc(HT_STAT_STORAGE_FULL);
		return 0;
	}
	pos = st->stream.pos[dir & 1];
	st->stream.pos[dir & 1] = pos + (__u32)ret;
	st->tgid = pid_tgid >> 32;
	/* ciphertext of a TLS session: its plaintext is captured from the TLS library. A socket
	 * already known as TLS is matched again: its session may have lost its state. */
	if (tls_enabled &&
	    (st->tls || st->stream.proto == HT_PROTO_UNKNOWN || st->stream.tls_like) &&
	    tls_match_nested(sk, trusted, st->id, pid_tgid, st->tls)) {
		st->tls = 1;
		st->stream.proto = HT_PROTO_OTHER;
	}
	if (st->stream.proto == HT_PROTO_UNKNOWN && peer_is_agent(sk, trusted))
		st->stream.proto = HT_PROTO_OTHER;
	if (st->stream.proto == HT_PROTO_OTHER)
		return 0;
	if (ret == 0) {
		if (st->stream.proto == HT_PROTO_HTTP1 && dir == HT_DIR_INGRESS) {
			s = scratch_get();
			if (!s)
				return 0;
			fill_event_header(&s->ev, sk, trusted, st, pid_tgid, pos, dir, ts_ns);
			s->ev.flags = HT_DATA_EOF;
			emit_event(&s->ev, sizeof(s->ev));
		}
		return 0;
	}
	stat_inc(HT_STAT_SOCKET_IO);
	s = scratch_get();
	if (!s)
		return 0;
	if (known_src)
		src = *known_src;
	if (known_src ? !src.buf && !src.iov : !resolve_from_regs(&src)) {
		if (st->stream.proto != HT_PROTO_HTTP1)
			return 0;
		/* bytes went by without a buffer we can read (sendfile, splice, io_uring,
		 * kernel senders): report their size and time so userspace knows the position
		 * and when a body ended */
		stat_inc(HT_STAT_NO_SYSCALL);
		fill_event_header(&s->ev, sk, trusted, st, pid_tgid, pos, dir, ts_ns);
		s->ev.len = (__u32)ret;
		s->ev.flags = HT_DATA_TRUNCATED;
		emit_event(&s->ev, sizeof(s->ev));
		return 0;
	}

	head = capture_head(s, &st->stream, &src, (__u32)ret, dir, pos);
	if (head < 0) {
		/* a handshake record on an fd the process gave to SSL_set_fd */
		if (tls_enabled && st->stream.tls_like &&
		    tls_match_fd(sk, trusted, st->id, pid_tgid >> 32, src.fd))
			st->tls = 1;
		return 0;
	}
	fill_event_header(&s->ev, sk, trusted, st, pid_tgid, pos, dir, ts_ns);
	s->ev.fd = src.fd;
	s->ev.flags |= sock_nonblock_flag(sk);
	capture_emit(s, &st->stream, &src, (__u32)ret, dir, head);
	return 0;
}

/* A socket we followed (HTTP, or carrying a TLS session) reached TCP_CLOSE (closed, reset or
 * timed out): tell userspace so requests still waiting for an answer end now, with an
 * error. */
static __always_inline void emit_close(struct sock *sk, bool trusted, struct sock_state *st,
				       int oldstate, int newstate)
{
	struct ht_close_event ev = {};

	if (st->stream.proto != HT_PROTO_HTTP1 && !st->tls)
		return;
	ev.kind = HT_EV_CLOSE;
	ev.tgid = st->tgid;
	ev.ts_ns = bpf_ktime_get_ns();
	ev.cookie = sock_id(sk, trusted, st->id);
	ev.rd_pos = st->stream.pos[HT_DIR_INGRESS];
	ev.wr_pos = st->stream.pos[HT_DIR_EGRESS];
	ev.old_state = oldstate;
	ev.new_state = newstate;
	emit_event(&ev, sizeof(ev));
}

#endif
