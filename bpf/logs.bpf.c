// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * --capture-logs: what a server process writes to its stdout, its stderr or a named log
 * file, for the agent to attach to the request its thread is serving (agent/logcap.h).
 *
 *   ht_log_write   attached to sys_enter_write and sys_enter_pwrite64 (fd, buf, count)
 *   ht_log_writev  attached to sys_enter_writev and sys_enter_pwritev (fd, iov, iovcnt)
 *
 * Syscall tracepoints exist on every kernel hoptrace runs on, whatever the capture backend.
 * The bytes are read at the entry, where they are still in the caller's buffer. The loader
 * attaches these programs only under --capture-logs, so by default they cost nothing.
 *
 * What a write costs when on: a compare on the fd for every write of every process; for
 * fds 1 and 2 and when log files are named, a hash lookup on the tgid (only the processes
 * the agent saw serving a request are in log_procs); for those, a few probe reads to find
 * the fd's file, and a record of HT_LOG_CAPTURE bytes. Writes to TCP sockets on fd 1/2
 * (inetd-style servers whose stdout is the connection) are not log lines and are skipped.
 * A process logging through syslog(3) or sd_journal_print (datagrams to a socket) is not
 * seen; a systemd service's stdout is a stream socket to journald, and is.
 */
#include "common.bpf.h"

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* Number of identities in log_files (set by the loader): 0 lets writes to fds other than 1
 * and 2 return at once. */
const volatile __u32 log_files_n = 0;

/* tgid -> 1: processes whose log writes are recorded, filled by the agent when it first sees
 * a process serve a request and emptied when the process exits. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HT_MAX_LOG_PROCS);
	__type(key, __u32);
	__type(value, __u8);
} log_procs SEC(".maps");

/* (dev, ino) -> index of the --capture-log-file, filled by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HT_MAX_LOG_KEYS);
	__type(key, struct ht_log_file_key);
	__type(value, __u32);
} log_files SEC(".maps");

/* The record is assembled here: larger than the stack allows with the rest. data is twice
 * the capture so that a masked offset plus a masked length stays inside. */
struct log_scratch {
	struct ht_log_event ev;
	char spill[2 * HT_LOG_CAPTURE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct log_scratch);
} log_heap SEC(".maps");

#define LOG_MASK (HT_LOG_CAPTURE - 1)
#define LOG_IOV_MAX 8 /* segments of a writev looked at */

/* The file behind fd in the current task, or NULL. */
static __always_inline struct file *fd_file(struct task_struct *task, long fd)
{
	struct files_struct *files = BPF_CORE_READ(task, files);
	struct fdtable *fdt;
	struct file **fds;
	struct file *file = NULL;

	if (fd < 0 || fd > 0x7fffffff || !files)
		return NULL;
	fdt = BPF_CORE_READ(files, fdt);
	if (!fdt || (__u64)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return NULL;
	return file;
}

/* Which log stream a write to fd is, 0: none. *index: the log file's index. */
static __always_inline __u8 log_stream_of(struct task_struct *task, long fd, __u32 *index)
{
	struct file *file = fd_file(task, fd);
	struct inode *inode;

	if (!file)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	if (!inode)
		return 0;
	if (fd == 1 || fd == 2) {
		if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFSOCK) {
			struct socket *sock = BPF_CORE_READ(file, private_data);
			struct sock *sk = sock ? BPF_CORE_READ(sock, sk) : NULL;
			__u16 family = sk ? BPF_CORE_READ(sk, __sk_common.skc_family) : 0;

			/* a unix stream (journald) is a log; a TCP connection is traffic */
			if (family == AF_INET || family == AF_INET6)
				return 0;
		}
		return fd == 1 ? HT_LOG_STDOUT : HT_LOG_STDERR;
	}
	if (!log_files_n)
		return 0;
	{
		struct ht_log_file_key key = {
		    .dev = BPF_CORE_READ(inode, i_sb, s_dev),
		    .ino = BPF_CORE_READ(inode, i_ino),
		};
		__u32 *idx = bpf_map_lookup_elem(&log_files, &key);

		if (!idx)
			return 0;
		*index = *idx;
	}
	return HT_LOG_FILE;
}

/* The header of a log record for a write of count bytes to fd, or NULL when the write is
 * not one to record. */
static __always_inline struct log_scratch *log_begin(long fd, __u64 count)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, index = 0, zero = 0;
	struct log_scratch *s;
	__u8 stream;

	if (fd != 1 && fd != 2 && !log_files_n)
		return NULL;
	if (!count || !bpf_map_lookup_elem(&log_procs, &tgid))
		return NULL;
	stream = log_stream_of(current_task(), fd, &index);
	if (!stream)
		return NULL;
	s = bpf_map_lookup_elem(&log_heap, &zero);
	if (!s)
		return NULL;
	s->ev.kind = HT_EV_LOG;
	s->ev.tgid = tgid;
	s->ev.tid = (__u32)pid_tgid;
	s->ev.ts_ns = bpf_ktime_get_ns();
	s->ev.fd = (__s32)fd;
	s->ev.len = count > 0xffffffffULL ? 0xffffffffU : (__u32)count;
	s->ev.cap_len = 0;
	s->ev.stream = stream;
	s->ev.flags = count > HT_LOG_CAPTURE ? HT_LOG_TRUNCATED : 0;
	s->ev.file_index = index;
	s->ev._pad = 0;
	return s;
}

static __always_inline int log_emit(struct log_scratch *s)
{
	stat_inc(HT_STAT_LOG_WRITES);
	return emit_event(&s->ev, sizeof(s->ev));
}

/* write(fd, buf, count), pwrite64(fd, buf, count, pos) */
SEC("tp")
int ht_log_write(struct trace_event_raw_sys_enter *ctx)
{
	long fd = (long)ctx->args[0];
	const void *buf = (const void *)ctx->args[1];
	__u64 count = ctx->args[2];
	struct log_scratch *s = log_begin(fd, count);
	__u32 n;

	if (!s)
		return 0;
	n = count < HT_LOG_CAPTURE ? (__u32)count : HT_LOG_CAPTURE;
	if (bpf_probe_read_user(s->ev.data, n & (2 * HT_LOG_CAPTURE - 1), buf)) {
		s->ev.flags |= HT_LOG_READ_FAULT;
		stat_inc(HT_STAT_READ_FAULT);
		n = 0;
	}
	s->ev.cap_len = (__u16)n;
	return log_emit(s);
}

/* writev(fd, iov, iovcnt), pwritev(fd, iov, iovcnt, ...): the first segments, up to the
 * capture size. */
SEC("tp")
int ht_log_writev(struct trace_event_raw_sys_enter *ctx)
{
	long fd = (long)ctx->args[0];
	const struct iovec *iov = (const struct iovec *)ctx->args[1];
	__u32 iovcnt = (__u32)ctx->args[2];
	struct log_scratch *s;
	__u64 off = 0, total = 0;
	struct iovec v;

	/* the byte count is the sum of the segments: add what is looked at */
	for (__u32 i = 0; i < LOG_IOV_MAX && i < iovcnt; i++) {
		if (bpf_probe_read_user(&v, sizeof(v), &iov[i]))
			break;
		total += v.iov_len;
	}
	s = log_begin(fd, total);
	if (!s)
		return 0;
	for (__u32 i = 0; i < LOG_IOV_MAX && i < iovcnt; i++) {
		__u64 n;

		if (off >= HT_LOG_CAPTURE || bpf_probe_read_user(&v, sizeof(v), &iov[i]))
			break;
		n = v.iov_len < HT_LOG_CAPTURE - off ? v.iov_len : HT_LOG_CAPTURE - off;
		off &= LOG_MASK;
		n &= LOG_MASK | HT_LOG_CAPTURE;
		if (n && bpf_probe_read_user(s->ev.data + off, n, v.iov_base)) {
			s->ev.flags |= HT_LOG_READ_FAULT;
			stat_inc(HT_STAT_READ_FAULT);
			break;
		}
		off += n;
	}
	if (iovcnt > LOG_IOV_MAX)
		s->ev.flags |= HT_LOG_TRUNCATED;
	s->ev.cap_len = (__u16)(off < HT_LOG_CAPTURE ? off : HT_LOG_CAPTURE);
	return log_emit(s);
}
