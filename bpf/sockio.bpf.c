// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Socket I/O capture from hooks inside the socket layer, which hold BTF socket pointers
 * (sock.bpf.h explains the backends). Both run in the calling task, after the protocol's
 * sendmsg/recvmsg, and never for file or pipe I/O; the syscall's fd and user buffer come
 * from the task's saved user registers (bpf_task_pt_regs, 5.15), so no sys_enter/sys_exit
 * pair is needed (shared/research/kernel-facts.md, section 7).
 *
 *   tp_btf  sock_send_length / sock_recv_length (sk, ret, flags): 6.3+, the cheapest.
 *   fexit   inet_sendmsg, inet6_sendmsg (IPv4/IPv6 sockets' sendmsg), inet_recvmsg,
 *           inet6_recvmsg, and inet_sendpage (sendfile and splice before 6.5, which send
 *           through sendmsg): the functions that call into TCP in every kernel with BTF
 *           trampolines; cross-file calls, so never inlined into their callers.
 */
#define HT_INJECT_CTX 1
#include "sock.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* The filters every hooked socket I/O passes before any map lookup. */
static __always_inline int hooked_io(struct sock *sk, int ret, int flags, __u8 dir)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (ret < 0 || !sk || !sock_is_tcp_inet(sk, true))
		return 0;
	if ((pid_tgid >> 32) == self_tgid) {
		if (dir == HT_DIR_EGRESS)
			remember_agent_port(sk, true);
		return 0;
	}
	if (!task_selected(current_task(), pid_tgid >> 32))
		return 0;
	return socket_io(sk, true, ret, flags, dir, NULL, 0);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ht_sock_send, struct sock *sk, int ret, int flags)
{
	return hooked_io(sk, ret, flags, HT_DIR_EGRESS);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(ht_sock_recv, struct sock *sk, int ret, int flags)
{
	return hooked_io(sk, ret, flags, HT_DIR_INGRESS);
}

SEC("fexit/inet_sendmsg")
int BPF_PROG(ht_inet_sendmsg, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	return hooked_io(sock->sk, ret, 0, HT_DIR_EGRESS);
}

SEC("fexit/inet6_sendmsg")
int BPF_PROG(ht_inet6_sendmsg, struct socket *sock, struct msghdr *msg, size_t size, int ret)
{
	return hooked_io(sock->sk, ret, 0, HT_DIR_EGRESS);
}

SEC("fexit/inet_recvmsg")
int BPF_PROG(ht_inet_recvmsg, struct socket *sock, struct msghdr *msg, size_t size, int flags,
	     int ret)
{
	return hooked_io(sock->sk, ret, flags, HT_DIR_INGRESS);
}

SEC("fexit/inet6_recvmsg")
int BPF_PROG(ht_inet6_recvmsg, struct socket *sock, struct msghdr *msg, size_t size, int flags,
	     int ret)
{
	return hooked_io(sock->sk, ret, flags, HT_DIR_INGRESS);
}

/* Until 6.5 sendfile and splice to a socket go through sendpage, not sendmsg: no buffer to
 * read, but the bytes must count in the stream position (a body sent by nginx). */
SEC("fexit/inet_sendpage")
int BPF_PROG(ht_inet_sendpage, struct socket *sock, struct page *page, int offset, size_t size,
	     int flags, long ret)
{
	return hooked_io(sock->sk, (int)ret, 0, HT_DIR_EGRESS);
}

#define TCP_SYN_SENT 2

/* --repair=inject: a task starts a TCP connection (SYN_SENT, inside connect(), in its own
 * context): mark the socket if the task is selected; sock_ops enrols it once established.
 * The local port is not chosen yet: only the remote one can select it. */
static __always_inline void inject_mark_connect(struct sock *sk)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct inject_sock *mark;

	if (!bpf_map_lookup_elem(&inject_force, &tgid)) {
		if (!task_selected(current_task(), tgid))
			return;
		if (filter_by_port && !ports_selected(0, bpf_ntohs(sk->__sk_common.skc_dport)))
			return;
	}
	mark = bpf_sk_storage_get(&inject_marks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!mark) {
		stat_inc(HT_STAT_STORAGE_FULL);
		return;
	}
	/* the first byte written starts a request */
	mark->framing = HT_FRAME_BOUNDARY;
	mark->body_left = 0;
	mark->marked = 1;
}

/* Socket close for the two backends above (their state is in socket local storage), and
 * connection start for --repair=inject. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ht_sock_state, const struct sock *sk, int oldstate, int newstate)
{
	struct sock_state *st;

	if (inject_enabled && newstate == TCP_SYN_SENT) {
		inject_mark_connect((struct sock *)sk);
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	st = sock_state_get((struct sock *)sk, true, false);
	if (!st)
		return 0;
	/* a request read here that was never answered: its server context ends now */
	if (inject_enabled)
		server_conn_done(sock_id((struct sock *)sk, true, st->id));
	emit_close((struct sock *)sk, true, st, oldstate, newstate);
	return 0;
}
