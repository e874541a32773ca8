// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * --repair=inject: put a traceparent header into outgoing plaintext HTTP/1.x requests of
 * selected processes that lack one. Loaded and attached only when asked for (agent/inject.c);
 * without the option none of this is loaded.
 *
 *   ht_inject_sockops  sock_ops on the cgroup v2 root. ACTIVE_ESTABLISHED (in softirq): put
 *                      the sockets marked when a selected task connected (sockio.bpf.c:
 *                      inject_mark_connect) in inject_socks. sock_ops programs cannot tell
 *                      the task before 6.10, so they do not choose.
 *   ht_inject_msg      sk_msg verdict on inject_socks, runs in the sending task: add one
 *                      traceparent line after the request line of a whole header block.
 *   ht_inject_skb      no-op sk_skb verdict on inject_socks. Without it any socket in a
 *                      sockhash reads FIONREAD as 0 (regression of commit 929e30f93125,
 *                      measured in shared/research/kernel-facts.md section 3).
 *
 * Never corrupt a request: on any doubt the message passes unchanged.
 */
#include "common.bpf.h"
#include "inject.bpf.h"
#include <bpf/bpf_endian.h>

#define EEXIST 17
/* Bytes of the message head scanned for the header block. */
#define INJECT_SCAN_MAX 4096
/* "traceparent: 00-" 32 "-" 16 "-" 2 "\r\n" */
#define TP_LINE_LEN 70
#define TP_NAME_LEN 12 /* "traceparent:" */

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} inject_socks SEC(".maps");

struct scan_state {
	__u32 len;	  /* scanned bytes */
	__u32 line_start; /* offset of the current line */
	__u32 first_crlf; /* offset just after the request line's CRLF, 0: not seen */
	__u32 hdr_end;	  /* offset just after the blank line, 0: not seen */
	__u32 has_tp;
	char prev; /* the byte before the current one, 0 at the start */
	char _pad[3];
};

/* The scan's state is kept here, not on the stack: before 6.7 the verifier did not see a
 * bpf_loop callback's writes to its caller's stack and pruned the code after the loop as
 * dead (measured on Debian's 6.1: nothing was ever injected). A map value is unknown to
 * it. */
struct inject_scratch {
	char buf[INJECT_SCAN_MAX];
	char line[TP_LINE_LEN + 2];
	struct scan_state st;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inject_scratch);
} inject_heap SEC(".maps");

SEC("sockops")
int ht_inject_sockops(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	__u64 cookie;
	__u8 *mark;

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;
	if (!sk || skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	/* marked by the capture side when a selected task connected (inject_mark_connect) */
	mark = bpf_sk_storage_get(&inject_marks, sk, 0, 0);
	if (!mark || !*mark)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	if (bpf_sock_hash_update(skops, &inject_socks, &cookie, BPF_NOEXIST))
		stat_inc(HT_STAT_MAP_FULL);
	return 1;
}

static long scan_cb(__u32 n, void *unused)
{
	__u32 zero = 0;
	struct inject_scratch *s = bpf_map_lookup_elem(&inject_heap, &zero);
	struct scan_state *st;
	__u64 i = n;
	char prev;

	/* the verifier tracks the 64-bit register: bound that one (clang would check a copy) */
	asm volatile("" : "+r"(i));
	if (!s)
		return 1;
	st = &s->st;
	if (i >= INJECT_SCAN_MAX || i >= st->len)
		return 1;
	if (st->first_crlf && i == st->line_start && i + TP_NAME_LEN <= st->len &&
	    i < INJECT_SCAN_MAX - TP_NAME_LEN) {
		if (is_tp_name(&s->buf[i]))
			st->has_tp = 1;
	}
	/* the byte before is kept rather than read at i - 1: before 6.x the verifier does not
	 * learn i >= 1 from i != 0 and refuses the read */
	prev = st->prev;
	st->prev = s->buf[i];
	if (s->buf[i] != '\n')
		return 0;
	if (prev != '\r')
		return 1; /* a bare LF (or one at the start): leave such a request alone */
	if (!st->first_crlf) {
		st->first_crlf = i + 1;
	} else if (i == st->line_start + 1) {
		st->hdr_end = i + 1;
		return 1;
	}
	st->line_start = i + 1;
	return 0;
}

static __always_inline bool is_request_line(const struct inject_scratch *s, __u32 first_crlf)
{
	const char *h;
	__u32 m = 0, v;

	/* METHOD SP ... SP HTTP/1.x CRLF */
	for (int j = 0; j < 8; j++) {
		char c = s->buf[j];

		if (c == ' ')
			break;
		if (c < 'A' || c > 'Z')
			return false;
		m++;
	}
	if (m < 3 || m > 7 || s->buf[m & 7] != ' ')
		return false;
	if (first_crlf < 16 || first_crlf > INJECT_SCAN_MAX) /* "GET / HTTP/1.1\r\n" */
		return false;
	v = first_crlf - 11; /* " HTTP/1.x\r\n" */
	if (v > INJECT_SCAN_MAX - 11)
		return false;
	if (s->buf[v] != ' ')
		return false;
	h = &s->buf[v + 1];
	return h[0] == 'H' && h[1] == 'T' && h[2] == 'T' && h[3] == 'P' && h[4] == '/' &&
	       h[5] == '1' && h[6] == '.' && (h[7] == '0' || h[7] == '1');
}

static __always_inline char hex_digit(__u32 d)
{
	d &= 15;
	return d < 10 ? '0' + d : 'a' + d - 10;
}

static __always_inline void hex_encode(char *dst, const __u8 *src, int n)
{
	for (int j = 0; j < n; j++) {
		dst[2 * j] = hex_digit(src[j] >> 4);
		dst[2 * j + 1] = hex_digit(src[j]);
	}
}

/* The ids to inject: a child of the server span the thread serves (one request, read with
 * blocking I/O), else a new root. */
static __always_inline void choose_ids(struct ht_ctx_ids *ids, __u64 pid_tgid)
{
	struct server_ctx *sc = bpf_map_lookup_elem(&server_ctxs, &pid_tgid);

	if (sc && sc->inflight == 1 && !sc->nonblocking) {
		__builtin_memcpy(ids->trace_id, sc->ids.trace_id, 16);
		__builtin_memcpy(ids->parent_id, sc->ids.span_id, 8);
		ids->flags = sc->ids.flags;
	} else {
		random_bytes(ids->trace_id, 16);
		ids->flags = 1;
	}
	random_bytes(ids->span_id, 8);
	ids->span_id[0] |= 1; /* never all zero */
}

static __always_inline void build_line(struct inject_scratch *s, const struct ht_ctx_ids *ids)
{
	char *l = s->line;

	l[0] = 't';
	l[1] = 'r';
	l[2] = 'a';
	l[3] = 'c';
	l[4] = 'e';
	l[5] = 'p';
	l[6] = 'a';
	l[7] = 'r';
	l[8] = 'e';
	l[9] = 'n';
	l[10] = 't';
	l[11] = ':';
	l[12] = ' ';
	l[13] = '0';
	l[14] = '0';
	l[15] = '-';
	hex_encode(l + 16, ids->trace_id, 16);
	l[48] = '-';
	hex_encode(l + 49, ids->span_id, 8);
	l[65] = '-';
	l[66] = hex_digit(ids->flags >> 4);
	l[67] = hex_digit(ids->flags);
	l[68] = '\r';
	l[69] = '\n';
}

SEC("sk_msg")
int ht_inject_msg(struct sk_msg_md *msg)
{
	struct scan_state *st;
	struct handoff ho = {};
	struct inject_scratch *s;
	__u64 pid_tgid;
	__u32 zero = 0, at;
	__u64 len;
	void *data, *data_end;
	char *p;

	if (msg->size < 16)
		return SK_PASS;
	len = msg->size < INJECT_SCAN_MAX ? msg->size : INJECT_SCAN_MAX;
	/* make the head linear so it can be read in one copy */
	if (bpf_msg_pull_data(msg, 0, len, 0))
		return SK_PASS;
	data = msg->data;
	data_end = msg->data_end;
	if (data_end - data < 16)
		return SK_PASS;
	if ((__u64)(data_end - data) < len)
		len = data_end - data;
	s = bpf_map_lookup_elem(&inject_heap, &zero);
	if (!s)
		return SK_PASS;
	/* quick reject before copying: requests start with an upper-case method */
	if (data + 1 > data_end || *(char *)data < 'A' || *(char *)data > 'Z')
		return SK_PASS;
	/* not zeroed: nothing at or past len is ever read */
	asm volatile("" : "+r"(len)); /* check the register the call uses (clang copies it) */
	if (len > INJECT_SCAN_MAX)
		return SK_PASS;
	if (bpf_probe_read_kernel(s->buf, len, data))
		return SK_PASS;
	st = &s->st;
	__builtin_memset(st, 0, sizeof(*st));
	st->len = len;
	bpf_loop(INJECT_SCAN_MAX, scan_cb, NULL, 0);
	if (!st->first_crlf || !is_request_line(s, st->first_crlf))
		return SK_PASS;
	if (!st->hdr_end) {
		stat_inc(HT_STAT_INJECT_PARTIAL);
		return SK_PASS;
	}
	if (st->has_tp) {
		stat_inc(HT_STAT_INJECT_HAS_TP);
		return SK_PASS;
	}
	at = st->first_crlf;
	if (at > INJECT_SCAN_MAX)
		return SK_PASS;
	pid_tgid = bpf_get_current_pid_tgid();
	choose_ids(&ho.ids, pid_tgid);
	ho.lport = (__u16)msg->local_port;
	ho.rport = (__u16)bpf_ntohl(msg->remote_port);
	build_line(s, &ho.ids);
	if (bpf_msg_push_data(msg, at, TP_LINE_LEN, 0)) {
		stat_inc(HT_STAT_INJECT_PUSH_FAIL);
		return SK_PASS;
	}
	/* From here the message holds TP_LINE_LEN uninitialised bytes: fill them or drop it.
	 * One linear element for the whole message also avoids the Nagle stall of a message
	 * split into several elements (kernel-facts.md section 3); if that is too big, pull
	 * just the head. */
	if (bpf_msg_pull_data(msg, 0, msg->size, 0) &&
	    bpf_msg_pull_data(msg, 0, at + TP_LINE_LEN, 0)) {
		stat_inc(HT_STAT_INJECT_PUSH_FAIL);
		return SK_DROP;
	}
	data = msg->data;
	data_end = msg->data_end;
	p = data + at;
	if ((void *)p + TP_LINE_LEN > data_end) {
		stat_inc(HT_STAT_INJECT_PUSH_FAIL);
		return SK_DROP;
	}
	for (int j = 0; j < TP_LINE_LEN; j++)
		p[j] = s->line[j];
	stat_inc(HT_STAT_INJECTED);
	/* the send handler of this write reports these ids with the request */
	if (bpf_map_update_elem(&inject_handoff, &pid_tgid, &ho, BPF_ANY))
		stat_inc(HT_STAT_MAP_FULL);
	return SK_PASS;
}

SEC("sk_skb")
int ht_inject_skb(struct __sk_buff *skb)
{
	return SK_PASS;
}
