/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kernel <-> userspace ABI of hoptrace: every record the BPF programs put in the
 * ring buffer, the stats counters and the configuration maps. Both sides include this
 * file and nothing else defines these layouts.
 *
 * Records use fixed-width fields, largest first, with explicit padding; each starts with
 * a __u32 kind from enum ht_event_kind.
 */
#ifndef HOPTRACE_EVENTS_H
#define HOPTRACE_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Largest per-event payload copy the BPF object is compiled for. The effective capture
 * size is a load-time setting (power of two, <= this). */
#define HT_MAX_CAPTURE 16384
/* 8 KiB per I/O covers the header-size limits of common servers (nginx, Apache: 8 KiB). */
#define HT_DEFAULT_CAPTURE 8192
/* How many bytes after a start line are captured in full as a possible header block,
 * across several reads or writes of the same direction. */
#define HT_HEADER_WINDOW 16384
/* Bytes copied from the head of a body read/write: enough for a chunk-size line. */
#define HT_BODY_PEEK 64
/* Bytes copied from the tail of a partly captured read/write: enough for the
 * terminating "0\r\n\r\n" of a chunked body. */
#define HT_TAIL_BYTES 8
/* Unclassified reads/writes allowed before a connection is declared not HTTP. Connections
 * that predate the agent may start mid-body. */
#define HT_CLASSIFY_TRIES 64
/* Bytes that tell an HTTP/1.x start line from other data ("OPTIONS ", "HTTP/1.1"). An I/O
 * shorter than this at a message boundary may hold only the start of one (Go's server reads
 * one byte ahead): it is kept and classified together with the next I/O. */
#define HT_START_PROBE 8
/* Segments of a vectored I/O (readv, writev, sendmsg, recvmsg) whose bytes are copied:
 * UIO_MAXIOV, every segment a vectored syscall may have. Apache's mod_proxy_http writes a
 * request with one segment per header line. */
#define HT_MAX_IOVECS 1024
/* Messages of a sendmmsg/recvmmsg whose byte counts are added to the stream position. */
#define HT_MAX_MMSGS 8
#define HT_COMM_LEN 16

/* 8 MiB holds several hundred ms of traffic at 20k requests/s (~2 KiB each) while the
 * consumer drains every 20 ms; the ring is mapped twice, so it counts double in RSS. */
#define HT_DEFAULT_RINGBUF_BYTES (8u << 20)
#define HT_MAX_SELECTED 1024
/* TLS sessions (SSL objects) followed at once, and threads inside an SSL call at once. */
#define HT_MAX_TLS_SESSIONS 32768
#define HT_MAX_TLS_OWNERS 4096 /* processes whose session states are counted (fairness) */
#define HT_MAX_TLS_CALLS 16384

/* A TLS session whose socket is not known (memory BIO, or no socket I/O seen yet) is
 * reported under a synthetic cookie: this bit set, the rest random. Socket cookies are
 * counters and never have it. Such events carry an all-zero tuple (family 0). */
#define HT_COOKIE_SYNTHETIC (1ULL << 63)
/* Under the syscall capture backend, tracepoint programs cannot ask for socket cookies: a
 * connection is identified by an id drawn at random when its state is created, with this
 * bit set (and HT_COOKIE_SYNTHETIC clear), so it never equals a socket cookie. */
#define HT_COOKIE_DRAWN (1ULL << 62)

/* How long a server request may lend its trace to calls of the thread that serves it: BPF's
 * context for --repair=inject (bpf/inject.bpf.h) and userspace's adoption by thread
 * (agent/correlate.h) use the same bound, so the two never disagree about a late call. */
#define HT_CTX_MAX_AGE_NS (60ULL * 1000000000ULL)

enum ht_event_kind {
	HT_EV_DATA = 1,	 /* bytes read from or written to an HTTP socket */
	HT_EV_CLOSE = 2, /* an HTTP socket left the established state */
	HT_EV_EXIT = 3,	 /* a process (thread group) exited */
	HT_EV_FORK = 4,	 /* a thread or process was created by a traced task */
	HT_EV_EXEC = 5,	 /* a process exec'd a new image */
	HT_EV_LOG = 6,	 /* --capture-logs: a write to stdout/stderr or a named log file */
};

enum ht_dir {
	HT_DIR_INGRESS = 0, /* bytes received by the traced process */
	HT_DIR_EGRESS = 1,  /* bytes sent by the traced process */
};

/* ht_data_event.flags */
enum ht_data_flags {
	HT_DATA_TRUNCATED = 1 << 0,  /* cap_len < len: bytes between payload and tail not copied */
	HT_DATA_READ_FAULT = 1 << 1, /* bpf_probe_read_user failed, payload missing */
	HT_DATA_EOF = 1 << 2,	     /* a read returned 0: the peer closed its side */
	HT_DATA_TAIL = 1 << 3,	     /* tail[] holds the last tail_len bytes of the I/O */
	HT_DATA_TLS = 1 << 4,	     /* plaintext from a TLS library, not the socket */
	HT_DATA_CTX = 1 << 5,	     /* ctx holds the ids of the request starting here (inject) */
	/* The socket's file is in non-blocking mode (O_NONBLOCK): the thread doing this I/O
	 * may multiplex many requests (event loop, Go's netpoller), so "the thread that read
	 * a request" is no evidence that its later calls serve that request. */
	HT_DATA_NONBLOCK = 1 << 6,
};

/* ht_stat index: per-CPU counters, summed by userspace. */
enum ht_stat {
	HT_STAT_EVENTS = 0,	  /* records written to the ring buffer */
	HT_STAT_RINGBUF_FULL,	  /* records lost: ring buffer reserve/output failed */
	HT_STAT_READ_FAULT,	  /* user buffer could not be read */
	HT_STAT_STORAGE_FULL,	  /* socket storage could not be created */
	HT_STAT_NOT_HTTP,	  /* connections classified as not HTTP */
	HT_STAT_SOCKET_IO,	  /* TCP socket reads/writes seen after selection */
	HT_STAT_PEEK_SKIPPED,	  /* MSG_PEEK reads ignored (data read again later) */
	HT_STAT_NO_SYSCALL,	  /* socket I/O not made by a known syscall (io_uring, kernel) */
	HT_STAT_MAP_FULL,	  /* other map updates that failed */
	HT_STAT_TLS_CALLS,	  /* SSL_read/SSL_write calls seen after selection */
	HT_STAT_TLS_SOCKETS,	  /* sockets matched to a TLS session */
	HT_STAT_TLS_NO_SOCKET,	  /* TLS sessions reported without a socket (synthetic cookie) */
	HT_STAT_TLS_PORT_UNKNOWN, /* TLS I/O skipped under --port: the session's socket is unknown
				   */
	HT_STAT_INJECTED,	  /* requests given a traceparent header (--repair=inject) */
	HT_STAT_INJECT_HAS_TP,	  /* requests sent unchanged: they already carry a traceparent */
	HT_STAT_INJECT_PARTIAL, /* requests sent unchanged: header block not whole in the message */
	HT_STAT_INJECT_PUSH_FAIL, /* bpf_msg_push_data/pull_data failed: sent unchanged or dropped
				   */
	HT_STAT_INJECT_UNFRAMED,  /* request-like messages sent unchanged: the connection's
				   * framing was lost (chunked body, split header block...), so
				   * they may be body bytes */
	HT_STAT_TLS_RECREATED,	  /* SSL calls on a session with no state: it was evicted from
				   * tls_states (or began before the agent, or has no SSL_set_fd) */
	HT_STAT_TLS_RELEARNED,	  /* such sessions matched again to their socket (already TLS) */
	HT_STAT_TLS_SHARE_FULL,	  /* session states refused: the process holds its share of
				   * tls_states (a flood of sessions must not evict the others') */
	HT_STAT_LOG_WRITES,	  /* --capture-logs: log writes of server processes recorded */
	HT_STAT__COUNT,
};

/* Local/remote endpoints as the traced process sees them. IPv4 is stored as
 * IPv4-mapped IPv6 (::ffff:a.b.c.d) so both families share one layout. */
struct ht_tuple {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport; /* host byte order */
	__u16 rport; /* host byte order */
	__u16 family;
	__u16 _pad;
};
_Static_assert(sizeof(struct ht_tuple) == 40, "ht_tuple layout");

/* Trace context chosen in BPF for --repair=inject (bpf/inject.bpf.h). On a server request:
 * the trace id (the incoming one, else random) and the server span's id. On a client
 * request: exactly what was injected (trace id, the client span's id, its parent). */
struct ht_ctx_ids {
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 parent_id[8]; /* all zero: none */
	__u8 flags;	   /* W3C trace flags */
	__u8 _pad[7];
};
_Static_assert(sizeof(struct ht_ctx_ids) == 40, "ht_ctx_ids layout");

struct ht_data_event {
	__u32 kind; /* HT_EV_DATA */
	__u32 tgid;
	__u64 ts_ns;	     /* CLOCK_MONOTONIC (bpf_ktime_get_ns) when the I/O completed */
	__u64 cookie;	     /* socket cookie: the connection identity */
	__u64 pos;	     /* stream offset of the first byte of this I/O, per direction */
	__u64 proc_start_ns; /* start time of the thread group leader: process identity */
	struct ht_tuple tuple;
	__u32 tid;
	__s32 fd;
	__u32 len;     /* bytes transferred by the I/O */
	__u32 cap_len; /* bytes of payload that follow the record */
	__u16 flags;   /* enum ht_data_flags */
	__u8 dir;      /* enum ht_dir */
	__u8 tail_len; /* valid bytes in tail[] */
	/* The payload starts with this many bytes of earlier I/Os of the same direction, the
	 * start of a start line too short to classify on its own (pos and len include them).
	 * Userspace may have seen them already, in the records of those I/Os. */
	__u8 replay_len;
	__u8 _pad[3];
	char comm[HT_COMM_LEN]; /* thread group leader's comm */
	__u8 tail[HT_TAIL_BYTES];
	struct ht_ctx_ids ctx; /* valid with HT_DATA_CTX */
			       /* cap_len bytes of payload follow the record */
};
_Static_assert(sizeof(struct ht_data_event) == 168, "ht_data_event layout");

struct ht_close_event {
	__u32 kind; /* HT_EV_CLOSE */
	__u32 tgid; /* last tgid that did I/O on the socket */
	__u64 ts_ns;
	__u64 cookie;
	__u64 rd_pos; /* bytes received when it closed */
	__u64 wr_pos; /* bytes sent when it closed */
	__u32 old_state;
	__u32 new_state;
};
_Static_assert(sizeof(struct ht_close_event) == 48, "ht_close_event layout");

/* HT_EV_EXIT, HT_EV_FORK and HT_EV_EXEC share one record. */
struct ht_task_event {
	__u32 kind;
	__u32 tgid; /* FORK: parent tgid; EXIT/EXEC: the process */
	__u64 ts_ns;
	__u64 proc_start_ns;
	__u32 tid;	  /* FORK: parent tid */
	__u32 child_tgid; /* FORK only */
	__u32 child_tid;  /* FORK only */
	__u32 group_dead; /* EXIT: the last thread of the process exited */
	char comm[HT_COMM_LEN];
};
_Static_assert(sizeof(struct ht_task_event) == 56, "ht_task_event layout");

/* The syscall capture backend (bpf/syscalls.bpf.c): what a syscall's entry saw, for its
 * exit, by thread (pid_tgid). The agent also writes HT_SYS_IO_SEED entries for reads that
 * were already blocked when it started (agent/sysseed.c). */
enum ht_sys_io_kind {
	HT_SYS_IO_BUFFER = 0, /* buf or iov/iovcnt locate the bytes */
	HT_SYS_IO_OPAQUE = 1, /* bytes the program cannot read (sendfile, splice) */
	HT_SYS_IO_MMSG = 2,   /* iov points to an mmsghdr array of iovcnt entries */
	HT_SYS_IO_SELF = 3,   /* the agent's own send: only its local port is remembered */
	HT_SYS_IO_SEED = 4,   /* nr and the raw arguments: fd, buf = arg 1, iov = arg 2,
			       * flags = arg 3; decoded at the exit of that syscall */
};

struct ht_sys_io {
	__u64 sk;  /* struct sock address (0 in a seed) */
	__u64 buf; /* single buffer, or 0 */
	__u64 iov; /* iovec array (mmsghdr array for HT_SYS_IO_MMSG), or 0 */
	__u32 iovcnt;
	__s32 fd;
	__u32 flags;	/* recv flags */
	__u8 dir;	/* enum ht_dir */
	__u8 kind;	/* enum ht_sys_io_kind */
	__u16 nr;	/* HT_SYS_IO_SEED: the syscall number */
	__u64 start_ns; /* when the syscall began */
};
_Static_assert(sizeof(struct ht_sys_io) == 48, "ht_sys_io layout");

/* --capture-logs (bpf/logs.bpf.c). Bytes copied from the head of each log write: a log
 * line is rarely longer, and the record stays small (what an I/O costs matters for a
 * process that logs a line per request). */
#define HT_LOG_CAPTURE 256
/* Processes whose log writes are recorded: those the agent saw serving a request. */
#define HT_MAX_LOG_PROCS 4096
/* Named log files (--capture-log-file), matched by identity (device, inode): each may have
 * two identities (see agent/main.c add_log_file: a file on overlayfs). */
#define HT_MAX_LOG_FILES 16
#define HT_MAX_LOG_KEYS (2 * HT_MAX_LOG_FILES)

enum ht_log_stream {
	HT_LOG_STDOUT = 1,
	HT_LOG_STDERR = 2,
	HT_LOG_FILE = 3, /* a named log file: file_index says which */
};

/* ht_log_event.flags */
enum ht_log_flags {
	HT_LOG_TRUNCATED = 1 << 0,  /* the write was longer than cap_len */
	HT_LOG_READ_FAULT = 1 << 1, /* its bytes could not be read: data is empty */
};

/* The identity of a named log file: the kernel's dev_t of its superblock (MAJOR << 20 |
 * MINOR, not stat(2)'s encoding) and its inode number. */
struct ht_log_file_key {
	__u64 dev;
	__u64 ino;
};
_Static_assert(sizeof(struct ht_log_file_key) == 16, "ht_log_file_key layout");

struct ht_log_event {
	__u32 kind; /* HT_EV_LOG */
	__u32 tgid;
	__u64 ts_ns; /* CLOCK_MONOTONIC at the write's entry */
	__u32 tid;
	__s32 fd;
	__u32 len;	  /* bytes the write asked to write */
	__u16 cap_len;	  /* bytes of data[] that are valid */
	__u8 stream;	  /* enum ht_log_stream */
	__u8 flags;	  /* enum ht_log_flags */
	__u32 file_index; /* HT_LOG_FILE: the log_files value (the agent's index) */
	__u32 _pad;
	char data[HT_LOG_CAPTURE];
};
_Static_assert(sizeof(struct ht_log_event) == 40 + HT_LOG_CAPTURE, "ht_log_event layout");

/* Per-socket state kept in socket local storage (freed with the socket). */
enum ht_proto {
	HT_PROTO_UNKNOWN = 0,
	HT_PROTO_HTTP1 = 1,
	HT_PROTO_OTHER = 2,
};

#endif /* HOPTRACE_EVENTS_H */
