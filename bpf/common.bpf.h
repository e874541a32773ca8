/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Maps, configuration and helpers shared by every hoptrace BPF program. Each program file
 * includes this file; the objects are linked into one (bpftool gen object), so the maps
 * are declared weak here and resolved to a single instance by the linker.
 */
#ifndef HOPTRACE_COMMON_BPF_H
#define HOPTRACE_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hoptrace/events.h"

#define __shared __attribute__((weak))

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Load-time configuration (rodata, set by the loader before load). */
const volatile __u32 self_tgid __shared = 0; /* the agent itself is never traced */
const volatile __u32 capture_bytes __shared = HT_DEFAULT_CAPTURE; /* power of two */
const volatile __u32 wakeup_bytes __shared = 0;	 /* ring buffer wake-up threshold */
const volatile __u8 filter_by_tgid __shared = 0; /* trace only tgids in selected_tgids */
const volatile __u8 filter_by_comm __shared = 0; /* trace only comms in selected_comms */
const volatile __u8 filter_by_port __shared = 0; /* only connections with a selected port */
const volatile __u8 tls_enabled __shared = 1;	 /* match sockets to TLS sessions (tls.bpf.c) */

/*
 * One ring buffer per CPU, looked up by the CPU the program runs on. With a single ring the
 * producers on different CPUs contend for its lock and position words: measured under
 * nginx + wrk on 2 CPUs, a reserve alone cost ~350 ns per record against ~50 ns on an
 * uncontended ring. The agent merges the rings back into time order. The loader creates a
 * ring for each online CPU (all the size of this template) and fills the array.
 */
struct ringbuf_per_cpu {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, HT_DEFAULT_RINGBUF_BYTES);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* sized by the loader: one slot per possible CPU */
	__type(key, __u32);
	__array(values, struct ringbuf_per_cpu);
} events SEC(".maps") __shared;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HT_STAT__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps") __shared;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HT_MAX_SELECTED);
	__type(key, __u32);
	__type(value, __u8);
} selected_tgids SEC(".maps") __shared;

struct comm_key {
	char comm[HT_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct comm_key);
	__type(value, __u8);
} selected_comms SEC(".maps") __shared;

/* --port: a byte per port. An array lookup is inlined by the verifier, a hash lookup is a
 * call and a hash per I/O. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} selected_ports SEC(".maps") __shared;

static __always_inline void stat_inc(enum ht_stat idx)
{
	__u32 key = idx;
	__u64 *v = bpf_map_lookup_elem(&stats, &key);

	if (v)
		*v += 1; /* per-CPU slot: no atomics needed */
}

/* Ring buffer wake-ups are batched: the consumer drains on a 5 ms timer, so records are
 * written without waking it. A wake-up costs a self-IPI per record (irq_work); querying the
 * fill level to wake only when a ring fills (bpf_ringbuf_query) measured ~250 ns per record,
 * as much as the write itself. Each ring holds far more than 5 ms of a CPU's records.
 * wakeup_bytes 0: wake on every record instead. */
static __always_inline __u64 ringbuf_wakeup_flag(void)
{
	return wakeup_bytes ? BPF_RB_NO_WAKEUP : 0;
}

static __always_inline int emit_event(void *data, __u64 size)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&events, &cpu);

	/* no ring: a CPU brought online after the agent started */
	if (!ring || bpf_ringbuf_output(ring, data, size, ringbuf_wakeup_flag())) {
		stat_inc(HT_STAT_RINGBUF_FULL);
		return -1;
	}
	stat_inc(HT_STAT_EVENTS);
	return 0;
}

/* Process selection by tgid and comm (ports are checked per connection). The task is read
 * with probe reads: it may come from bpf_get_current_task() (no BTF pointer before 5.11). */
static __always_inline bool task_selected(struct task_struct *task, __u32 tgid)
{
	if (tgid == self_tgid)
		return false;
	if (filter_by_tgid && !bpf_map_lookup_elem(&selected_tgids, &tgid))
		return false;
	if (filter_by_comm) {
		struct comm_key key = {};

		BPF_CORE_READ_INTO(&key.comm, task, group_leader, comm);
		if (!bpf_map_lookup_elem(&selected_comms, &key))
			return false;
	}
	return true;
}

/* The current task, for programs without BTF task pointers: every read goes through
 * bpf_probe_read_kernel (bpf_get_current_task_btf needs 5.11). */
static __always_inline struct task_struct *current_task(void)
{
	return (struct task_struct *)bpf_get_current_task();
}

/* Process identity of the current task: its thread group leader's start time and comm. */
static __always_inline __u64 current_proc_start(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_time);
}

static __always_inline void current_proc_comm(struct task_struct *task, char *comm)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	bpf_core_read(comm, HT_COMM_LEN, &leader->comm);
}

#endif
