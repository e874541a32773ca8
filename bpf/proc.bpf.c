// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Process and thread lifecycle of traced tasks: fork (thread ancestry, used to find the
 * request a thread works for), exec (new image: new service name) and exit (cleanup).
 */
#include "tls.bpf.h"

static __always_inline void emit_task_event(__u32 kind, struct task_struct *task,
					    struct task_struct *child, bool group_dead)
{
	struct ht_task_event ev = {};

	ev.kind = kind;
	ev.tgid = task->tgid;
	ev.tid = task->pid;
	ev.ts_ns = bpf_ktime_get_ns();
	ev.proc_start_ns = task->group_leader->start_time;
	if (child) {
		ev.child_tgid = child->tgid;
		ev.child_tid = child->pid;
	}
	ev.group_dead = group_dead;
	bpf_probe_read_kernel(ev.comm, sizeof(ev.comm), task->group_leader->comm);
	emit_event(&ev, sizeof(ev));
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ht_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 tgid = parent->tgid;
	__u32 child_tgid = child->tgid;
	__u8 one = 1;

	if (!task_selected(parent, tgid))
		return 0;
	/* --pid follows the process's children too (pre-fork servers, workers) */
	if (filter_by_tgid && child_tgid != tgid &&
	    bpf_map_update_elem(&selected_tgids, &child_tgid, &one, BPF_ANY))
		stat_inc(HT_STAT_MAP_FULL);
	emit_task_event(HT_EV_FORK, parent, child, false);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ht_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!task_selected(task, task->tgid))
		return 0;
	emit_task_event(HT_EV_EXEC, task, NULL, false);
	return 0;
}

static __always_inline int process_exit(struct task_struct *task, bool group_dead)
{
	__u32 tgid = task->tgid;

	if (!task_selected(task, tgid))
		return 0;
	emit_task_event(HT_EV_EXIT, task, NULL, group_dead);
	if (group_dead && filter_by_tgid)
		bpf_map_delete_elem(&selected_tgids, &tgid);
	/* its session states go idle and are the LRU's first victims: its share ends */
	if (group_dead)
		bpf_map_delete_elem(&tls_owners, &tgid);
	return 0;
}

/* Kernels whose tracepoint passes group_dead (6.16+). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(ht_exit, struct task_struct *task, bool group_dead)
{
	return process_exit(task, group_dead);
}

/* Older kernels pass the task only. do_exit() fires the tracepoint after decrementing
 * signal->live, so 0 there means every thread of the process is exiting. Two threads
 * exiting together may both see 0: a second group_dead for a process that is going away
 * anyway. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(ht_exit_task_only, struct task_struct *task)
{
	return process_exit(task, task->signal->live.counter == 0);
}
