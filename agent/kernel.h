/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * What the running kernel offers hoptrace, read from its own BTF and file systems at
 * start-up: never inferred from the version number, which says nothing of backports
 * (RHEL) or of what a distribution turned off. The loader chooses its programs from these
 * facts, then confirms each choice by loading it (agent/loader.c).
 */
#ifndef HOPTRACE_KERNEL_H
#define HOPTRACE_KERNEL_H

#include <stdbool.h>

struct kernel_facts {
	char release[65];     /* uname -r */
	bool btf;	      /* /sys/kernel/btf/vmlinux could be read */
	bool sock_length_tps; /* tracepoints sock_send_length, sock_recv_length (6.3) */
	bool exit_group_dead; /* sched_process_exit passes group_dead (6.16) */
	bool inet_msg_funcs;  /* inet_sendmsg, inet_recvmsg: fexit targets */
	bool inet6_msg_funcs; /* inet6_sendmsg, inet6_recvmsg (IPv6 built in) */
	bool inet_sendpage;   /* inet_sendpage (sendfile/splice path before 6.5) */
	bool task_pt_regs;    /* helper bpf_task_pt_regs (5.15) */
	bool loop;	      /* helper bpf_loop (5.17) */
	bool syscall_tps;     /* tracefs lists the syscall tracepoints */
};

/* Fill k from the running kernel. Never fails: what cannot be read is reported absent. */
void kernel_probe(struct kernel_facts *k);
/* Mount tracefs at /sys/kernel/tracing when the syscall tracepoints are not listed (the
 * syscall capture backend attaches through it). Returns true when it was mounted. */
bool kernel_mount_tracefs(struct kernel_facts *k);

#endif
