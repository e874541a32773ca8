// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The universal capture backend (sock.bpf.h explains the three): syscall tracepoints, which
 * every kernel has, for kernels without the socket tracepoints (6.3) and without BTF
 * trampolines or bpf_task_pt_regs (5.15), and for hosts where those fail to load.
 *
 *   ht_sys_enter3 attached to sys_enter_{read,write,readv,writev,sendmsg,recvmsg} and
 *   ht_sys_enter4 to sys_enter_{sendto,recvfrom,sendmmsg,recvmmsg,sendfile64,splice}
 *                 (the argument count tells them apart): finds the fd's socket
 *                 through the task's file table; for a TCP socket of a selected process it
 *                 keeps the arguments (where the bytes are) for the exit, by thread.
 *   ht_sys_exit   attached to the matching sys_exit_*: the byte count, then the same
 *                 capture path as the other backends.
 *   ht_sock_close tracepoint sock/inet_sock_set_state: TCP_CLOSE ends the connection and
 *                 frees its state.
 *
 * What it costs: every read and write of a traced process, on files and pipes too, runs
 * ht_sys_enter3/4 (a few probe reads to tell a socket from a file); socket I/O adds a hash
 * update and delete. accept/connect/close are not needed: a connection's role comes from
 * its first bytes and its end from inet_sock_set_state. What it cannot see: I/O that makes
 * no such syscall (io_uring, kernel senders), and 32-bit syscalls.
 *
 * Built without HT_INJECT_CTX: these programs must load on kernels without bpf_loop.
 */
#include "sock.bpf.h"

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* Syscalls in flight at once (threads blocked in a socket read count). LRU: a thread that
 * never returns must not hold its slot for ever. */
#define HT_MAX_SYSCALLS_INFLIGHT 32768

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HT_MAX_SYSCALLS_INFLIGHT);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct ht_sys_io);
} sys_ios SEC(".maps");

/* The TCP (IPv4/IPv6) socket behind fd in the current task, or NULL. */
static __always_inline struct sock *fd_to_tcp_sock(struct task_struct *task, long fd)
{
	struct files_struct *files = BPF_CORE_READ(task, files);
	struct fdtable *fdt;
	struct file **fds;
	struct file *file = NULL;
	struct socket *sock;
	struct sock *sk;

	if (fd < 0 || fd > 0x7fffffff || !files)
		return NULL;
	fdt = BPF_CORE_READ(files, fdt);
	if (!fdt || (__u64)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || !sock_is_tcp_inet(sk, false))
		return NULL;
	return sk;
}

/* Decode the arguments of a hooked syscall into io (fd, direction, where the bytes are).
 * Returns false for a syscall this program does not follow. */
static __always_inline bool decode_args(long nr, const unsigned long *args, struct ht_sys_io *io)
{
	struct user_msghdr mh;

	io->fd = (__s32)args[0];
	io->kind = HT_SYS_IO_BUFFER;
	switch (nr) {
	case NR_write:
	case NR_sendto:
		io->dir = HT_DIR_EGRESS;
		io->buf = args[1];
		return true;
	case NR_read:
		io->dir = HT_DIR_INGRESS;
		io->buf = args[1];
		return true;
	case NR_recvfrom:
		io->dir = HT_DIR_INGRESS;
		io->buf = args[1];
		io->flags = (__u32)args[3];
		return true;
	case NR_writev:
	case NR_readv:
		io->dir = nr == NR_writev ? HT_DIR_EGRESS : HT_DIR_INGRESS;
		io->iov = args[1];
		io->iovcnt = (__u32)args[2];
		return true;
	case NR_sendmsg:
	case NR_recvmsg:
		io->dir = nr == NR_sendmsg ? HT_DIR_EGRESS : HT_DIR_INGRESS;
		io->flags = nr == NR_recvmsg ? (__u32)args[2] : 0;
		if (bpf_probe_read_user(&mh, sizeof(mh), (const void *)args[1])) {
			io->kind = HT_SYS_IO_OPAQUE; /* the bytes still count */
			return true;
		}
		io->iov = (__u64)mh.msg_iov;
		io->iovcnt = (__u32)mh.msg_iovlen;
		return true;
	case NR_sendmmsg:
	case NR_recvmmsg:
		io->dir = nr == NR_sendmmsg ? HT_DIR_EGRESS : HT_DIR_INGRESS;
		io->flags = (__u32)args[3];
		io->kind = HT_SYS_IO_MMSG;
		io->iov = args[1];
		io->iovcnt = (__u32)args[2];
		return true;
	case NR_sendfile:
		io->dir = HT_DIR_EGRESS; /* out_fd; the file read from is not ours */
		io->kind = HT_SYS_IO_OPAQUE;
		return true;
	case NR_splice:
		io->kind = HT_SYS_IO_OPAQUE; /* which end is a socket: see the caller */
		return true;
	}
	return false;
}

/* The entry of a hooked syscall with nargs arguments. A tracepoint program may read no
 * further into its record than the shortest record it is attached to (the kernel refuses
 * the attachment otherwise), hence one program per argument count. */
static __always_inline int sys_enter(struct trace_event_raw_sys_enter *ctx, int nargs)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task = current_task();
	/* __syscall_nr is an int; the 4 bytes after it are padding */
	long nr = (int)ctx->id;
	unsigned long args[4];
	struct ht_sys_io io = {};
	struct sock *sk;

	if ((pid_tgid >> 32) != self_tgid && !task_selected(task, pid_tgid >> 32))
		return 0;
	/* constant offsets: the verifier refuses a context pointer moved by a variable */
	args[0] = ctx->args[0];
	args[1] = ctx->args[1];
	args[2] = ctx->args[2];
	args[3] = nargs > 3 ? ctx->args[3] : 0;
	if (!decode_args(nr, args, &io))
		return 0;
	if (nr == NR_splice) {
		/* splice(fd_in, off_in, fd_out, ...): one end is a pipe */
		sk = fd_to_tcp_sock(task, (long)args[2]);
		io.dir = HT_DIR_EGRESS;
		io.fd = (__s32)args[2];
		if (!sk) {
			sk = fd_to_tcp_sock(task, (long)args[0]);
			io.dir = HT_DIR_INGRESS;
			io.fd = (__s32)args[0];
		}
	} else {
		sk = fd_to_tcp_sock(task, io.fd);
	}
	if (!sk)
		return 0;
	if ((pid_tgid >> 32) == self_tgid) {
		if (io.dir != HT_DIR_EGRESS)
			return 0;
		io.kind = HT_SYS_IO_SELF;
	}
	io.sk = (__u64)sk;
	io.start_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&sys_ios, &pid_tgid, &io, BPF_ANY))
		stat_inc(HT_STAT_MAP_FULL);
	return 0;
}

/* read, write, readv, writev, sendmsg, recvmsg */
SEC("tp")
int ht_sys_enter3(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(ctx, 3);
}

/* sendto, recvfrom, sendmmsg, recvmmsg, sendfile64, splice */
SEC("tp")
int ht_sys_enter4(struct trace_event_raw_sys_enter *ctx)
{
	return sys_enter(ctx, 4);
}

/* A read that was already blocked when the agent started (its entry was never seen): the
 * agent put its arguments here from /proc/PID/task/TID/syscall (agent/sysseed.c). Decode
 * them now, in the task, if this exit is that syscall's. */
static __always_inline bool resolve_seed(struct ht_sys_io *io, long nr)
{
	struct task_struct *task = current_task();
	/* the raw arguments, as struct ht_sys_io documents for a seed */
	unsigned long args[4] = {(unsigned long)io->fd, io->buf, io->iov, io->flags};
	struct sock *sk;

	if (nr != io->nr || !task_selected(task, bpf_get_current_pid_tgid() >> 32))
		return false;
	io->buf = io->iov = 0;
	io->iovcnt = io->flags = 0;
	if (!decode_args(nr, args, io) || io->dir != HT_DIR_INGRESS)
		return false;
	sk = fd_to_tcp_sock(task, io->fd);
	io->sk = (__u64)sk;
	return sk != NULL;
}

/* Bytes moved by a sendmmsg/recvmmsg that moved n messages: each mmsghdr's msg_len. The
 * program cannot copy them message by message; they still count in the stream position. */
static __always_inline long mmsg_bytes(const struct ht_sys_io *io, long n)
{
	const struct mmsghdr *v = (const struct mmsghdr *)io->iov;
	long total = 0;

#pragma unroll
	for (int i = 0; i < HT_MAX_MMSGS; i++) {
		__u32 len = 0;

		if (i >= n)
			break;
		if (bpf_probe_read_user(&len, sizeof(len), &v[i].msg_len))
			break;
		total += len;
	}
	if (n > HT_MAX_MMSGS)
		stat_inc(HT_STAT_NO_SYSCALL); /* messages past the 8th: their bytes are lost */
	return total;
}

SEC("tp")
int ht_sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ht_sys_io *found = bpf_map_lookup_elem(&sys_ios, &pid_tgid);
	struct io_source src = {};
	struct ht_sys_io io;
	long ret;

	if (!found)
		return 0;
	io = *found;
	bpf_map_delete_elem(&sys_ios, &pid_tgid);
	ret = ctx->ret;
	if (ret < 0)
		return 0;
	if (io.kind == HT_SYS_IO_SELF) {
		remember_agent_port((struct sock *)io.sk, false);
		return 0;
	}
	if (io.kind == HT_SYS_IO_SEED && !resolve_seed(&io, (int)ctx->id))
		return 0;
	src.fd = io.fd;
	if (io.kind == HT_SYS_IO_BUFFER) {
		src.buf = (const void *)io.buf;
		src.iov = (const struct iovec *)io.iov;
		src.iovcnt = io.iovcnt;
	} else if (io.kind == HT_SYS_IO_MMSG) {
		ret = mmsg_bytes(&io, ret);
	}
	if (ret > 0x7fffffff)
		ret = 0x7fffffff;
	/* Writes are stamped with their start: the exit comes after the peer may have read
	 * the bytes, and a server span must not end after the client span waiting for it.
	 * Reads with their end: the bytes exist only then. */
	return socket_io((struct sock *)io.sk, false, (int)ret, (int)io.flags, io.dir, &src,
			 io.dir == HT_DIR_EGRESS ? io.start_ns : 0);
}

SEC("tp/sock/inet_sock_set_state")
int ht_sock_close(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct sock *sk = (struct sock *)ctx->skaddr;
	__u64 key = (__u64)sk;
	struct sock_state *st;

	if (ctx->newstate != TCP_CLOSE)
		return 0;
	/* not sock_state_by_addr(): the local port is released (zeroed) before this
	 * tracepoint, and a state at this address can only be this socket's */
	st = bpf_map_lookup_elem(&sock_states_by_addr, &key);
	if (st)
		emit_close(sk, false, st, ctx->oldstate, ctx->newstate);
	bpf_map_delete_elem(&sock_states_by_addr, &key);
	return 0;
}
