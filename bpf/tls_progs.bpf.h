/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * HTTPS plaintext from OpenSSL (libssl.so.*, or binaries such as node that link it
 * statically and export its symbols). Userspace (agent/tls.c) attaches these programs to
 * each library once per inode, for every process; selection is checked here.
 *
 *   ht_ssl_enter   uprobe on SSL_read, SSL_read_ex, SSL_write, SSL_write_ex: stash the
 *                  arguments by thread (the call is then "active" for sockio.bpf.c)
 *   ht_ssl_ret_*   uretprobes on the same four, one program each (attach cookies need
 *                  5.15). Reads: the plaintext exists only after return. Writes: the return value
 *                  is the byte count actually taken (a non-blocking SSL_write returns -1
 *                  WANT_WRITE and is retried with the same buffer, so counting at entry
 *                  would count bytes twice), and by then the nested send has told us the
 *                  session's socket (curl's first SSL_write is the session's first I/O).
 *                  Measured here, the return probe adds 2-6 us to the ~21 us entry trap.
 *   ht_ssl_set_fd  uprobe on SSL_set_fd: the session's fd (matched to its socket on the
 *                  handshake's first record, in sockio.bpf.c)
 *   ht_ssl_free    uprobe on SSL_free: the session ends (SSL* values are reused by malloc)
 *
 * Plaintext goes through the same capture policy as socket I/O (capture.bpf.h), with
 * per-session stream positions, and is emitted with HT_DATA_TLS under the socket's cookie
 * when the socket is known, else under a synthetic cookie (HT_COOKIE_SYNTHETIC).
 *
 * Built twice: tls.bpf.c for every kernel (probe reads of the task, no attach cookies, no
 * bpf_loop: they load on 5.10), and tls_inject.bpf.c with HT_INJECT_CTX, whose programs
 * carry a _inj suffix and are loaded instead under --repair=inject.
 */
#ifndef HOPTRACE_TLS_PROGS_BPF_H
#define HOPTRACE_TLS_PROGS_BPF_H

#include "tls.bpf.h"

#ifndef EEXIST
#define EEXIST 17
#endif

static __always_inline struct tls_state *session_get(__u32 tgid, __u64 ssl, bool create)
{
	struct tls_key key = {.ssl = ssl, .tgid = tgid};
	struct tls_state *ts = bpf_map_lookup_elem(&tls_states, &key);
	struct tls_state fresh = {.fd = -1};

	if (ts || !create)
		return ts;
	if (!tls_owner_admit(tgid))
		return NULL;
	if (bpf_map_update_elem(&tls_states, &key, &fresh, BPF_NOEXIST) == -EEXIST) {
		tls_owner_release(tgid); /* another thread created it first */
		return bpf_map_lookup_elem(&tls_states, &key);
	}
	ts = bpf_map_lookup_elem(&tls_states, &key);
	if (!ts)
		stat_inc(HT_STAT_MAP_FULL);
	else
		stat_inc(HT_STAT_TLS_RECREATED); /* its socket is matched again on nested I/O */
	return ts;
}

/* The session ended (SSL_free) or starts over on another fd (SSL_clear + SSL_set_fd): its
 * connection ends in userspace like a socket that closed. */
static __always_inline void session_emit_close(struct tls_state *ts, __u32 tgid)
{
	struct ht_close_event ev = {};

	if (!ts->cookie)
		return; /* nothing was reported under this session */
	ev.kind = HT_EV_CLOSE;
	ev.tgid = tgid;
	ev.ts_ns = bpf_ktime_get_ns();
	ev.cookie = ts->cookie;
	ev.rd_pos = ts->stream.pos[HT_DIR_INGRESS];
	ev.wr_pos = ts->stream.pos[HT_DIR_EGRESS];
	emit_event(&ev, sizeof(ev));
}

static __always_inline void tls_fill_header(struct ht_data_event *ev, const struct tls_state *ts,
					    __u64 pid_tgid, __u64 pos, __u8 dir, __u64 ts_ns)
{
	struct task_struct *task = current_task();

	__builtin_memset(ev, 0, sizeof(*ev));
	ev->kind = HT_EV_DATA;
	ev->tgid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->ts_ns = ts_ns;
	ev->cookie = ts->cookie;
	ev->pos = pos;
	ev->proc_start_ns = current_proc_start(task);
	ev->dir = dir;
	ev->fd = ts->fd;
	ev->flags = HT_DATA_TLS;
	if (ts->cookie == ts->sock_cookie) {
		ev->tuple = ts->tuple;
		ev->flags |= ts->sock_flags;
	}
	current_proc_comm(task, ev->comm);
}

/* A state that replaces a lost one (relearned) restarts its stream positions at 0 under
 * the socket's cookie, which userspace may still hold at later positions (it would drop
 * the new bytes as out of order): end that connection first, just before the first new
 * event (ts_ns), in the same ring so that it comes first. */
static __always_inline void session_end_lost(const struct tls_state *ts, __u32 tgid, __u64 ts_ns)
{
	struct ht_close_event ev = {};

	ev.kind = HT_EV_CLOSE;
	ev.tgid = tgid;
	ev.ts_ns = ts_ns - 1;
	ev.cookie = ts->sock_cookie;
	emit_event(&ev, sizeof(ev));
}

/* The cookie a session's events carry is chosen at its first event and then kept: a
 * connection must not change identity in userspace when its socket is learned late. */
static __always_inline void session_fix_cookie(struct tls_state *ts, __u32 tgid, __u64 ts_ns)
{
	if (ts->cookie)
		return;
	if (ts->sock_cookie) {
		if (ts->relearned)
			session_end_lost(ts, tgid, ts_ns);
		ts->cookie = ts->sock_cookie;
		return;
	}
	ts->cookie =
	    HT_COOKIE_SYNTHETIC | (__u64)bpf_get_prandom_u32() << 32 | bpf_get_prandom_u32();
	stat_inc(HT_STAT_TLS_NO_SOCKET);
}

/* len plaintext bytes went through buf in direction dir (len 0 with eof: the peer closed).
 * Writes are stamped with the call's entry, reads with its return: the return probe of a
 * write runs after the peer may already have read the bytes, and a server span must not
 * end after the client span that waited for it. */
static __always_inline int tls_capture(__u64 pid_tgid, const struct ssl_call *call, __u32 len,
				       __u8 dir, bool eof)
{
	__u64 ts_ns = dir == HT_DIR_EGRESS ? call->entry_ns : bpf_ktime_get_ns();
	struct io_source src = {};
	struct capture_scratch *s;
	struct tls_state *ts;
	__u64 pos;
	int head;

	ts = session_get(pid_tgid >> 32, call->ssl, false);
	if (!ts)
		return 0;
	pos = ts->stream.pos[dir & 1];
	ts->stream.pos[dir & 1] = pos + len;
	if (filter_by_port) {
		if (!ts->sock_cookie) {
			stat_inc(HT_STAT_TLS_PORT_UNKNOWN);
			return 0;
		}
		if (!ports_selected(ts->tuple.lport, ts->tuple.rport))
			return 0;
	}
	if (ts->stream.proto == HT_PROTO_OTHER)
		return 0;
	s = scratch_get();
	if (!s)
		return 0;
	if (eof) {
		if (ts->stream.proto != HT_PROTO_HTTP1 || dir != HT_DIR_INGRESS)
			return 0;
		session_fix_cookie(ts, pid_tgid >> 32, ts_ns);
		tls_fill_header(&s->ev, ts, pid_tgid, pos, dir, ts_ns);
		s->ev.flags |= HT_DATA_EOF;
		emit_event(&s->ev, sizeof(s->ev));
		return 0;
	}
	/* a plain buffer, never a vector: without this the compiler keeps the iovec walk */
	if (!call->buf)
		return 0;
	src.buf = (const void *)call->buf;
	src.fd = ts->fd;
	head = capture_head(s, &ts->stream, &src, len, dir, pos);
	if (head < 0)
		return 0;
	session_fix_cookie(ts, pid_tgid >> 32, ts_ns);
	tls_fill_header(&s->ev, ts, pid_tgid, pos, dir, ts_ns);
	capture_emit(s, &ts->stream, &src, len, dir, head);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ht_ssl_enter, void *ssl, void *buf, int num, void *len_ptr)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ssl_call call = {};

	if (!task_selected(current_task(), pid_tgid >> 32))
		return 0;
	stat_inc(HT_STAT_TLS_CALLS);
	/* the session must exist before a nested socket I/O can be matched to it */
	if (!session_get(pid_tgid >> 32, (__u64)ssl, true))
		return 0;
	call.ssl = (__u64)ssl;
	call.buf = (__u64)buf;
	call.len_ptr = (__u64)len_ptr;
	call.entry_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&ssl_calls, &pid_tgid, &call, BPF_ANY))
		stat_inc(HT_STAT_MAP_FULL);
	return 0;
}

/* The return of an SSL call, how: which one (enum ht_tls_call). */
static __always_inline int ssl_return(int ret, __u32 how)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u8 dir = (how & HT_TLS_CALL_WRITE) ? HT_DIR_EGRESS : HT_DIR_INGRESS;
	struct ssl_call *active = bpf_map_lookup_elem(&ssl_calls, &pid_tgid);
	struct ssl_call call;
	__u64 n;

	if (!active)
		return 0; /* not selected, or the call began before the probe existed */
	call = *active;
	bpf_map_delete_elem(&ssl_calls, &pid_tgid);
	if (how & HT_TLS_CALL_EX) {
		/* 1 on success with the count in *len_ptr; 0 for both failure and EOF */
		if (ret != 1)
			return 0;
		if (bpf_probe_read_user(&n, sizeof(n), (const void *)call.len_ptr)) {
			stat_inc(HT_STAT_READ_FAULT);
			return 0;
		}
	} else {
		/* > 0 bytes; 0 on a read: close_notify (or a fatal error); < 0: WANT_READ,
		 * WANT_WRITE or an error, nothing moved */
		if (ret == 0 && dir == HT_DIR_INGRESS)
			return tls_capture(pid_tgid, &call, 0, dir, true);
		if (ret <= 0)
			return 0;
		n = (__u64)ret;
	}
	if (n == 0 || n > 0x7fffffff)
		return 0;
	return tls_capture(pid_tgid, &call, (__u32)n, dir, false);
}

SEC("uretprobe")
int BPF_KRETPROBE(ht_ssl_ret_read, int ret)
{
	return ssl_return(ret, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(ht_ssl_ret_write, int ret)
{
	return ssl_return(ret, HT_TLS_CALL_WRITE);
}

SEC("uretprobe")
int BPF_KRETPROBE(ht_ssl_ret_read_ex, int ret)
{
	return ssl_return(ret, HT_TLS_CALL_EX);
}

SEC("uretprobe")
int BPF_KRETPROBE(ht_ssl_ret_write_ex, int ret)
{
	return ssl_return(ret, HT_TLS_CALL_WRITE | HT_TLS_CALL_EX);
}

SEC("uprobe")
int BPF_KPROBE(ht_ssl_set_fd, void *ssl, int fd)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct tls_fd_key fkey = {.tgid = tgid, .fd = fd};
	struct tls_key key = {.ssl = (__u64)ssl, .tgid = tgid};
	struct tls_state fresh = {.fd = fd};
	struct tls_state *ts;
	__u64 ssl_v = (__u64)ssl;

	if (!task_selected(current_task(), tgid))
		return 0;
	ts = bpf_map_lookup_elem(&tls_states, &key);
	if (ts && !ts->cookie && !ts->sock_cookie) {
		ts->fd = fd;
	} else if (ts) {
		/* reused for another connection after SSL_clear */
		session_emit_close(ts, tgid);
		if (bpf_map_update_elem(&tls_states, &key, &fresh, BPF_ANY))
			stat_inc(HT_STAT_MAP_FULL);
	} else {
		if (!tls_owner_admit(tgid))
			return 0;
		if (bpf_map_update_elem(&tls_states, &key, &fresh, BPF_NOEXIST)) {
			tls_owner_release(tgid);
			stat_inc(HT_STAT_MAP_FULL);
		}
	}
	if (bpf_map_update_elem(&tls_fds, &fkey, &ssl_v, BPF_ANY))
		stat_inc(HT_STAT_MAP_FULL);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ht_ssl_free, void *ssl)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tls_key key = {.ssl = (__u64)ssl, .tgid = tgid};
	struct tls_state *ts = bpf_map_lookup_elem(&tls_states, &key);
	struct tls_fd_key fkey = {.tgid = tgid};
	__u64 *owner;

	if (!ts)
		return 0; /* never followed: not selected, or no I/O */
	session_emit_close(ts, tgid);
	fkey.fd = ts->fd;
	owner = ts->fd >= 0 ? bpf_map_lookup_elem(&tls_fds, &fkey) : NULL;
	if (owner && *owner == (__u64)ssl)
		bpf_map_delete_elem(&tls_fds, &fkey);
	if (!bpf_map_delete_elem(&tls_states, &key))
		tls_owner_release(tgid);
	return 0;
}

#endif
