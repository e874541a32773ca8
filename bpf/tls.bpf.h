/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * TLS sessions (OpenSSL SSL objects) and the sockets they run on: the maps tls.bpf.c keeps
 * and sockio.bpf.c consults to match a socket to its session. Matching, in order:
 *   1. socket I/O made by a thread while it is inside SSL_read/SSL_write (ssl_calls: set at
 *      the call's entry, removed at its return): the "nested syscall";
 *   2. the first TLS record on a socket whose fd the process gave to SSL_set_fd (tls_fds).
 * The match is kept in the session (tls_states) because reads served from OpenSSL's own
 * buffer make no syscall at all.
 */
#ifndef HOPTRACE_TLS_BPF_H
#define HOPTRACE_TLS_BPF_H

#include "capture.bpf.h"

/* Which OpenSSL call returned (tls_progs.bpf.h). */
enum ht_tls_call {
	HT_TLS_CALL_WRITE = 1 << 0, /* SSL_write/SSL_write_ex (else SSL_read/SSL_read_ex) */
	HT_TLS_CALL_EX = 1 << 1,    /* the _ex form: returns 1/0, byte count via a pointer */
};

struct tls_key {
	__u64 ssl; /* SSL* in the process */
	__u32 tgid;
	__u32 _pad;
};

struct tls_state {
	struct stream_state stream; /* plaintext positions and capture state */
	struct ht_tuple tuple;	    /* endpoints of sock_cookie */
	__u64 sock_cookie;	    /* socket matched to the session, 0 while unknown */
	__u64 cookie;		    /* cookie the session's events carry, 0 until the first */
	__s32 fd;		    /* from SSL_set_fd, -1 when unknown */
	__u16 sock_flags;	    /* HT_DATA_NONBLOCK of sock_cookie when matched */
	__u8 relearned;		    /* sock_cookie already carried TLS when matched: this state
				     * replaces one that was lost (evicted), see session_fix_cookie */
	__u8 _pad;
};

/* A thread inside SSL_read/SSL_write/_ex: the arguments its return needs. */
struct ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 len_ptr;	/* _ex forms: where the byte count is stored */
	__u64 entry_ns; /* when the call began */
};

struct tls_fd_key {
	__u32 tgid;
	__s32 fd;
};

/* LRU: a thread killed inside an SSL call, or an SSL object never freed, must not leak. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HT_MAX_TLS_CALLS);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct ssl_call);
} ssl_calls SEC(".maps") __shared;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HT_MAX_TLS_SESSIONS);
	__type(key, struct tls_key);
	__type(value, struct tls_state);
} tls_states SEC(".maps") __shared;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HT_MAX_TLS_SESSIONS);
	__type(key, struct tls_fd_key);
	__type(value, __u64); /* SSL* */
} tls_fds SEC(".maps") __shared;

/* Session states each process holds in tls_states, so that one process cannot take the
 * whole table: past tls_session_share its new sessions get no state (counted) instead of
 * evicting other processes' sessions. States the LRU evicts are not subtracted: a process
 * that lost some is refused a little early. LRU: a process that never exits from the
 * map's view (its exit missed) must not pin an entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HT_MAX_TLS_OWNERS);
	__type(key, __u32); /* tgid */
	__type(value, __u32);
} tls_owners SEC(".maps") __shared;

const volatile __u32 tls_session_share __shared = HT_MAX_TLS_SESSIONS / 2;

/* Room for one more session state of process tgid: taken and true, or false (counted). */
static __always_inline bool tls_owner_admit(__u32 tgid)
{
	__u32 *held = bpf_map_lookup_elem(&tls_owners, &tgid);
	__u32 one = 1;

	if (!held) {
		bpf_map_update_elem(&tls_owners, &tgid, &one, BPF_NOEXIST);
		return true;
	}
	if (*held >= tls_session_share) {
		stat_inc(HT_STAT_TLS_SHARE_FULL);
		return false;
	}
	__sync_fetch_and_add(held, 1);
	return true;
}

/* Process tgid gave back a session state (freed, or refused by the map after admission). */
static __always_inline void tls_owner_release(__u32 tgid)
{
	__u32 *held = bpf_map_lookup_elem(&tls_owners, &tgid);

	if (held && *held)
		__sync_fetch_and_add(held, (__u32)-1); /* no atomic sub before BPF v3 */
}

/* The identity of a socket: its cookie where the program may ask for it (tp_btf, fexit),
 * else the id its state was given when created (stored_id, see sock.bpf.h). */
static __always_inline __u64 sock_id(struct sock *sk, bool trusted, __u64 stored_id)
{
	return trusted ? bpf_get_socket_cookie(sk) : stored_id;
}

/* The state of a session that had one and lost it (evicted while its thread waited inside
 * SSL_read, say): a new one, so that the I/O under way is captured. NULL when the map
 * refuses it. */
static __always_inline struct tls_state *tls_state_recreate(const struct tls_key *key)
{
	struct tls_state fresh = {.fd = -1};
	struct tls_state *ts;

	if (!tls_owner_admit(key->tgid))
		return NULL;
	if (bpf_map_update_elem(&tls_states, key, &fresh, BPF_NOEXIST))
		tls_owner_release(key->tgid);
	ts = bpf_map_lookup_elem(&tls_states, key);
	stat_inc(ts ? HT_STAT_TLS_RECREATED : HT_STAT_MAP_FULL);
	return ts;
}

/* Socket sk, used by the current task, belongs to session ssl: record it unless the session
 * already runs on another socket (a custom BIO juggling several sockets: trust neither).
 * sk_was_tls: sk was matched to a session before, so a session without a socket that meets
 * it now lost its state (evicted from tls_states by a flood of other sessions) and relearns.
 * Returns true when sk is the session's socket. */
static __always_inline bool tls_match_socket(struct sock *sk, bool trusted, __u64 stored_id,
					     __u32 tgid, __u64 ssl, bool sk_was_tls)
{
	struct tls_key key = {.ssl = ssl, .tgid = tgid};
	struct tls_state *ts = bpf_map_lookup_elem(&tls_states, &key);
	__u64 id;

	if (!ts && sk_was_tls)
		ts = tls_state_recreate(&key);
	if (!ts)
		return false;
	id = sock_id(sk, trusted, stored_id);
	if (ts->sock_cookie && ts->sock_cookie != id)
		return false;
	/* refreshed whenever the session's socket is matched again (a later SSL_set_fd) */
	ts->sock_flags = sock_nonblock_flag(sk);
	if (ts->sock_cookie)
		return true;
	fill_tuple(sk, &ts->tuple, trusted);
	ts->sock_cookie = id;
	if (sk_was_tls) {
		ts->relearned = 1;
		stat_inc(HT_STAT_TLS_RELEARNED);
		return true;
	}
	stat_inc(HT_STAT_TLS_SOCKETS);
	return true;
}

/* Method 1: the current thread is inside an SSL call. Also for sockets matched before
 * (sk_was_tls): that is how a session whose state was lost finds its socket again. */
static __always_inline bool tls_match_nested(struct sock *sk, bool trusted, __u64 stored_id,
					     __u64 pid_tgid, bool sk_was_tls)
{
	struct ssl_call *call = bpf_map_lookup_elem(&ssl_calls, &pid_tgid);

	return call &&
	       tls_match_socket(sk, trusted, stored_id, pid_tgid >> 32, call->ssl, sk_was_tls);
}

/* Method 2: the socket's fd was handed to SSL_set_fd. */
static __always_inline bool tls_match_fd(struct sock *sk, bool trusted, __u64 stored_id, __u32 tgid,
					 __s32 fd)
{
	struct tls_fd_key key = {.tgid = tgid, .fd = fd};
	__u64 *ssl = bpf_map_lookup_elem(&tls_fds, &key);

	return ssl && tls_match_socket(sk, trusted, stored_id, tgid, *ssl, false);
}

#endif
